#!/bin/bash
# Example batch script (docs/contracts.md, "Slurm scripts"): `windward submit slurm-train.sh` reads the
# #SBATCH and #WINDWARD lines above the first command (scheduler.slurm).
#SBATCH --job-name=llama-sweep
#SBATCH --gpus=h100:8                 # 8 H100s for each array task
#SBATCH --time=6:00:00                # run time at full power
#SBATCH --array=0-3                   # four specs: llama-sweep_0 .. llama-sweep_3
#SBATCH --dependency=afterok:4711     # after job 4711 finished well
#SBATCH --begin=2026-06-01T06:00:00Z
#SBATCH --deadline=2026-06-03T00:00:00Z
#SBATCH --mem=256G                    # Slurm allocator option: accepted, reported as ignored
#WINDWARD --pool-labels=jurisdiction=eu --preemptible=yes --deadline-policy=soft
#WINDWARD --checkpoint-interval=30:00 --priority=1

python -m sweep --index "$SLURM_ARRAY_TASK_ID"
