"""``/vex``: accept an OpenVEX document within a repository pattern at run time, list the
documents in force (stored ones, signed referrers among them, next to the settings file's) and
withdraw one.

A document is validated whole (``verifiers.vex.model``; a bad one is a 422 naming the field and
changes nothing), stored in the caller's scope (a team admin on ``team/*`` adds VEX for
``team/app`` or ``team/*``, never ``*``), and the policies are applied again at once: the
verdicts its ``not_affected`` and ``fixed`` statements touch are decided again from their stored
findings, before the answer is sent, and the changes are announced (access log, webhooks) as
after an advisory import. Withdrawing one takes its waivers back the same way.
"""

from __future__ import annotations

import json

from aiohttp import web

from proxy.admin.access import require_pattern, rights
from proxy.admin.bodies import ReasonBody, VexBody
from proxy.admin.common import actor, ok, read_body, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models_policy import SettingsVexOut, StoredVexOut, VexChange, VexList
from proxy.admin.waivers import reevaluation
from proxy.context import info
from services.reevaluate import Report
from storage import vex
from storage.vex import StoredVex
from verifiers.vex.model import VexError, from_data


def stored_out(item: StoredVex) -> StoredVexOut:
    return StoredVexOut(
        source=item.source,  # type: ignore[arg-type]  # storage holds admin or referrer only
        id=item.id,
        scope=item.scope,
        subject=item.subject,
        referrer=item.referrer,
        signer=item.signer,
        author=item.author,
        added_by=item.added_by,
        created_at=item.created_at,
        status="withdrawn" if item.withdrawn_at else "active",
        withdrawn_at=item.withdrawn_at,
        withdrawn_by=item.withdrawn_by,
        withdraw_reason=item.withdraw_reason,
        document=json.loads(item.document),
    )


def _settings_out(request: web.Request) -> list[SettingsVexOut]:
    scope = rights(request).reads
    found = []
    for policy in services(request).settings.policies:
        if policy.vex is None or not any(scope.touches(p) for p in policy.repositories):
            continue
        for path, document in policy.vex.parsed_documents:
            found.append(
                SettingsVexOut(
                    source="settings",
                    policy=policy.name,
                    file=path,
                    scope=", ".join(policy.repositories),
                    author=document.author,
                    status="active",
                    document=document.model_dump(mode="json", by_alias=True),
                )
            )
    return found


async def list_vex(request: web.Request) -> web.StreamResponse:
    """GET /vex?all= : the documents within what the caller may read; withdrawn ones too with
    ``all=true``."""
    include = request.query.get("all", "") in ("1", "true", "yes")
    scope = rights(request).reads
    async with services(request).db() as session:
        stored = await vex.listed(session, include_withdrawn=include)
    chosen = [d for d in stored if scope.everything or scope.touches(d.scope)]
    return ok(VexList(vex=[*(stored_out(d) for d in chosen), *_settings_out(request)]))


async def accept(request: web.Request, body: VexBody) -> tuple[StoredVex, Report]:
    """Store a validated body's document in its scope, within what the caller administers, and
    decide again every verdict it touches. The one path for the admin API and the console, so
    both refuse the same documents and scopes (``AdminError``, nothing stored)."""
    info(request).repository = body.scope
    require_pattern(request, body.scope)
    try:
        document = from_data(body.document)
    except VexError as exc:
        raise AdminError(AdminCode.INVALID_FIELD, f"document: {exc}") from exc
    who = actor(request, body.actor, body.reason)
    svc = services(request)
    async with svc.db() as session, session.begin():
        made = await vex.add(
            session,
            source=vex.ADMIN,
            scope=body.scope,
            document=json.dumps(body.document, sort_keys=True, separators=(",", ":")),
            author=document.author,
            added_by=who,
        )
    report = await svc.policies.apply(f"VEX {made.id} by {made.author} added by {who}")
    return made, report


async def add(request: web.Request) -> web.StreamResponse:
    """POST /vex : store a document in the caller's scope and decide again, from stored
    findings, every verdict it touches."""
    made, report = await accept(request, await read_body(request, VexBody))
    return ok(VexChange(vex=stored_out(made), reevaluation=reevaluation(report)), status=201)


async def withdraw(request: web.Request) -> web.StreamResponse:
    """POST /vex/{id}/withdraw : withdraw a stored document in the caller's scope; what it let
    through is decided again and quarantined where its findings block."""
    vex_id = int(request.match_info["id"])
    body = await read_body(request, ReasonBody)
    svc = services(request)
    current = None
    if vex_id < 2**63:
        async with svc.db() as session:
            current = await vex.get(session, vex_id)
    if current is None:
        raise AdminError(AdminCode.NOT_FOUND, f"there is no stored VEX document {vex_id}")
    info(request).repository = current.scope
    require_pattern(request, current.scope)
    who = actor(request, body.actor, body.reason)
    async with svc.db() as session, session.begin():
        done = await vex.withdraw(session, vex_id, who, body.reason)
    if done is None:
        raise AdminError(AdminCode.CONFLICT, f"VEX document {vex_id} was already withdrawn")
    report = await svc.policies.apply(f"VEX {vex_id} by {done.author} withdrawn by {who}")
    return ok(VexChange(vex=stored_out(done), reevaluation=reevaluation(report)))
