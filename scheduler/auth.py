"""Who is calling, and what they may do: bearer tokens, tenants, operators, and data sovereignty.

Tokens are never stored: the tenants file holds ``sha256(token)`` (DESIGN section 7). A presented token is
hashed and compared with every stored hash through :func:`hmac.compare_digest` (constant time per
comparison, and every entry is compared, so the time taken does not tell which entry came close). A token
that matched is remembered in memory (never on disk), so a tenant's next request is not hashed again;
unknown tokens are never remembered.

Sovereignty (issue 5, item 5): a tenant's ``clearance`` is the highest pool clearance its jobs may require,
and also the highest clearance of a pool its work may land on (a secret pool holds only work of tenants
cleared for it); its ``jurisdictions`` (when given) are the only jurisdictions its jobs may require or land
in. :func:`tenant_pools` turns that into the names of the pools a tenant may use; :func:`admit_job` refuses
a job no eligible pool can ever hold, with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace

from scheduler.errors import InputError
from scheduler.jobs import Job, check_jobs_fit
from scheduler.models import CLEARANCE_LEVELS, Site, Tenant, TenantsFile

DEV_TOKEN_PREFIX = "windward-dev-"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a tenant (``tenant`` set) or an operator (``is_operator``)."""

    name: str
    is_operator: bool
    tenant: Tenant | None = None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def dev_token(name: str) -> str:
    """The development token of a demo tenant or operator (public by construction; see demo-tenants.yaml)."""
    return DEV_TOKEN_PREFIX + name


class Authenticator:
    """Maps a bearer token to a :class:`Principal` (None: unknown token)."""

    def __init__(self, tenants: TenantsFile) -> None:
        self._entries: tuple[tuple[bytes, Principal], ...] = tuple(
            [(bytes.fromhex(t.token_sha256), Principal(t.name, False, t)) for t in tenants.tenants]
            + [(bytes.fromhex(o.token_sha256), Principal(o.name, True, None)) for o in tenants.operators]
        )
        self.tenants: Mapping[str, Tenant] = {t.name: t for t in tenants.tenants}
        self.operators: tuple[str, ...] = tuple(o.name for o in tenants.operators)
        # tokens already verified -> their principal (memory only; at most one entry per principal, since
        # a token is known only if its sha256 is a stored one): a known token is not hashed again
        self._verified: dict[str, Principal] = {}

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        hit = self._verified.get(token)
        if hit is not None:
            return hit
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is not None and len(self._verified) < 4 * len(self._entries) + 16:
            self._verified[token] = found
        return found

    @staticmethod
    def bearer(authorization: str | None) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header (None when absent or another scheme)."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


def _level(clearance: str) -> int:
    return CLEARANCE_LEVELS.index(clearance)


def tenant_pools(site: Site, tenant: Tenant) -> tuple[str, ...]:
    """Names of the site's pools the tenant may use at all (clearance and jurisdictions)."""
    out = []
    for p in site.pools:
        if _level(p.labels.get("clearance", "public")) > _level(tenant.clearance):
            continue
        if tenant.jurisdictions and p.labels.get("jurisdiction") not in tenant.jurisdictions:
            continue
        out.append(p.name)
    return tuple(out)


def admit_job(site: Site, tenant: Tenant, job: Job) -> Job:
    """Check a tenant's new job against sovereignty and the site; return it with ``pools_allowed`` set.

    Raises :class:`InputError` naming the field, the value and what is allowed when the job asks for more
    than the tenant is cleared for, or when no pool it may use can ever hold it. Nothing is stored here.
    """
    if job.clearance is not None and _level(job.clearance) > _level(tenant.clearance):
        raise InputError(
            f"requires.clearance: {job.clearance!r} is above tenant {tenant.name!r}'s clearance "
            f"{tenant.clearance!r}; allowed: {list(CLEARANCE_LEVELS[: _level(tenant.clearance) + 1])}"
        )
    if job.jurisdiction is not None and tenant.jurisdictions and job.jurisdiction not in tenant.jurisdictions:
        raise InputError(
            f"requires.jurisdiction: {job.jurisdiction!r} is not one of tenant {tenant.name!r}'s "
            f"jurisdictions {list(tenant.jurisdictions)}"
        )
    allowed = tenant_pools(site, tenant)
    if not allowed:
        raise InputError(f"tenant {tenant.name!r} may use none of this site's pools (clearance, jurisdictions)")
    if tenant.quota_gpus is not None and job.gpus > tenant.quota_gpus:
        raise InputError(
            f"gpus: {job.gpus} is above tenant {tenant.name!r}'s quota of {tenant.quota_gpus} concurrent GPUs"
        )
    admitted = replace(job, pools_allowed=allowed)
    check_jobs_fit(site, [admitted], source=f"job spec (tenant {tenant.name!r}, pools it may use: {list(allowed)})")
    return admitted
