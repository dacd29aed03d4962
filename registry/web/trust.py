"""Signatures in the console: the public keys each namespace (and, for admins, the
whole registry) trusts, added from their PEM and removed after a confirmation; and each
namespace's signature policy (off, audit, enforce). The namespaces the user owns, the
same services and rules as /api/v1/trust/keys and /api/v1/namespaces/<ns>/policy."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.auth.sessions import Session
from registry.errors import RegistryError
from registry.requests import registry_of
from registry.services.policies import SIGNATURE_POLICIES
from registry.web import urls
from registry.web.manage import REGISTRY_WIDE, accounts_of, confirmed_removal, may_manage
from registry.web.pages import console, field, page

# A PEM public key is well under this; more is not a key.
_PEM_MAX = 16 * 1024


@console
async def trust(request: Request, session: Session) -> Response:
    return await _overview(request, session)


async def _overview(
    request: Request, session: Session, status: int = 200, **shown: object
) -> Response:
    owned = await accounts_of(request).owned_namespaces(session.identity)
    registry = registry_of(request)
    keys = [k for k in await registry.trust.keys(None) if owned is None or k.namespace in owned]
    namespaces = (
        sorted(owned)
        if owned is not None
        else [name for name, _, _ in await accounts_of(request).list_namespaces()]
    )
    policies = {n: (await registry.policies.get(n)).signature_policy for n in namespaces}
    return page(
        "trust.html",
        status,
        session=session,
        keys=keys,
        policies=policies,
        choices=SIGNATURE_POLICIES,
        # Where a user may add a key: the namespaces they own, and for admins "" too.
        keepers=([""] if owned is None else []) + namespaces,
        everywhere=REGISTRY_WIDE,
        typed=dict(request.state.form) if status != 200 else {},
        **{"failed": None, "failed_part": None, "notice": None, **shown},
    )


@console
async def add_key(request: Request, session: Session) -> Response:
    namespace = field(request, "namespace")
    try:
        await may_manage(request, session, namespace)
        key = await registry_of(request).trust.add_key(
            namespace, field(request, "name").strip(), field(request, "pem")[:_PEM_MAX]
        )
    except RegistryError as exc:
        return await _overview(request, session, exc.status, failed=exc.text, failed_part="key")
    return await _overview(
        request,
        session,
        notice=f"Key {key.name} ({key.fingerprint}) added; the signatures already stored "
        "are being checked against it.",
    )


@console
async def remove_key(request: Request, session: Session) -> Response:
    return await confirmed_removal(
        request,
        session,
        kind="key",
        path=urls.REMOVE_KEY,
        what="the trusted key",
        back=urls.TRUST(),
        consequence="What only this key signed counts as unsigned at once: under an "
        "enforce policy, it can no longer be pulled.",
        remove=registry_of(request).trust.remove_key,
    )


@console
async def set_policy(request: Request, session: Session) -> Response:
    namespace = request.path_params["namespace"]
    chosen = field(request, "signature_policy")
    try:
        await may_manage(request, session, namespace)
        await registry_of(request).policies.update(
            namespace, {"signature_policy": chosen}, admin=session.identity.admin
        )
    except RegistryError as exc:
        return await _overview(
            request, session, exc.status, failed=exc.text, failed_part="policies"
        )
    return await _overview(
        request, session, notice=f"Namespace {namespace}: signature policy {chosen}."
    )
