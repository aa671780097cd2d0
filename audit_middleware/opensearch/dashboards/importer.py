"""Install saved objects in OpenSearch Dashboards through its saved-objects API, idempotently.

1. With a tenant, ``GET /api/v1/auth/authinfo`` (the security plugin) must list it as
   writable for the user: Dashboards silently falls back to another tenant for one the
   user cannot use, so a wrong name would put the objects where nobody looks.
2. ``POST /api/saved_objects/_bulk_get`` reads what the tenant holds; an object whose
   attributes, references and migration version are already ours is ``unchanged``.
3. ``POST /api/saved_objects/_import?overwrite=true`` sends the others as one ndjson
   file (multipart field ``file``, a name ending in ``.ndjson``). The answer is 200
   even when objects failed, so ``success`` and every object's result are read:
   ``created``, or ``updated`` when it replaced one.

Every request carries ``osd-xsrf: true`` (Dashboards refuses writes without it) and,
with a tenant, the ``securitytenant`` header (the import route's query string accepts
no tenant). Failures raise ``SetupError`` with a sentence saying what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

from audit_middleware import env
from audit_middleware.opensearch.dashboards.bundle import BUNDLE_FILE
from audit_middleware.opensearch.dashboards.objects import encode_ndjson
from audit_middleware.opensearch.dashboards.settings import DashboardsSettings
from audit_middleware.opensearch.provisioning import SetupError, Status, Step, StepResult

__all__ = ["AUTHINFO_PATH", "BULK_GET_PATH", "IMPORT_PATH", "install"]

IMPORT_PATH = "/api/saved_objects/_import"
BULK_GET_PATH = "/api/saved_objects/_bulk_get"
AUTHINFO_PATH = "/api/v1/auth/authinfo"
TENANT_HEADER = "securitytenant"
# The security plugin's names for the global and the private tenant (tenant_resolver.ts).
_GLOBAL_NAMES = frozenset({"global", "Global", "global_tenant"})
_PRIVATE_NAMES = frozenset({"private", "Private", "__user__"})
_MESSAGE_LIMIT = 300


def _step(item: Mapping[str, Any], status: Status) -> Step:
    return Step(f"saved {item['type']}", str(item["attributes"]["title"]), status)


class _Dashboards:
    """The requests one install makes, with errors turned into ``SetupError``."""

    def __init__(self, settings: DashboardsSettings, session: requests.Session) -> None:
        self.settings = settings
        self.session = session
        self.headers = {"osd-xsrf": "true"}
        if settings.tenant is not None:
            self.headers[TENANT_HEADER] = settings.tenant
        if settings.username is not None and settings.password is not None:
            session.auth = (settings.username, settings.password)
        session.verify = settings.ca_certs if settings.ca_certs is not None else settings.verify_certs

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        url = f"{self.settings.url}{path}"
        where = f"OpenSearch Dashboards at {self.settings.url}"
        try:
            response = self.session.request(
                method, url, headers=self.headers, timeout=self.settings.timeout, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise SetupError(
                f"TLS handshake with {where} failed when trying to {what}: {exc}; set "
                f"{env.DASHBOARDS_CA_CERTS} to the CA bundle that signed its certificate"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise SetupError(
                f"{where} did not answer when trying to {what} ({type(exc).__name__}): is it running, "
                f"and is {env.DASHBOARDS_URL} (--dashboards-url) right?"
            ) from None
        if response.status_code >= 400:
            raise SetupError(self.refusal(response, what, where))
        try:
            return response.json()
        except ValueError:
            raise SetupError(
                f"{where} answered {what} with something that is not JSON: is {env.DASHBOARDS_URL} "
                "the Dashboards URL (with its server.basePath)?"
            ) from None

    def refusal(self, response: requests.Response, what: str, where: str) -> str:
        status = response.status_code
        if status == 401:
            return (
                f"{where} rejected the credentials (401) when trying to {what}: check "
                f"{env.DASHBOARDS_USERNAME} / {env.DASHBOARDS_PASSWORD} (default: the OpenSearch ones)"
            )
        if status == 403:
            return (
                f"the Dashboards user may not {what} (403 {_message(response)}): it needs write access to "
                "saved objects in the tenant (for example the kibana_user role)"
            )
        if status == 404:
            return (
                f"{where} has no {response.request.path_url.split('?')[0]} (404): check "
                f"{env.DASHBOARDS_URL}, including Dashboards' server.basePath (e.g. /_dashboards)"
            )
        if status == 503:
            return f"{where} is not ready yet (503) when trying to {what}: run setup again in a moment"
        return f"{where} answered {status} when trying to {what}: {_message(response)}"

    def check_tenant(self, tenant: str) -> None:
        """Fail unless the user may write to ``tenant`` (Dashboards would fall back silently)."""
        try:
            info = self.call("GET", AUTHINFO_PATH, f"check access to tenant {tenant!r}")
        except SetupError as exc:
            if "(404)" in str(exc):
                raise SetupError(
                    f"a Dashboards tenant ({tenant!r}) was given, but OpenSearch Dashboards at "
                    f"{self.settings.url} has no security plugin: leave {env.DASHBOARDS_TENANT} "
                    "(--dashboards-tenant) out"
                ) from None
            raise
        user = str(info.get("user_name", ""))
        tenants: Mapping[str, Any] = info.get("tenants") or {}
        key = "global_tenant" if tenant in _GLOBAL_NAMES else user if tenant in _PRIVATE_NAMES else tenant
        if key not in tenants:
            shown = sorted(
                "global" if t == "global_tenant" else "private" if t == user else t for t in tenants
            )
            raise SetupError(
                f"Dashboards user {user!r} has no tenant {tenant!r} (it has: {', '.join(shown) or 'none'}); "
                "Dashboards would put the saved objects in another tenant"
            )
        if tenants[key] is not True:
            raise SetupError(f"Dashboards user {user!r} may only read tenant {tenant!r}, not import into it")

    def stored(self, items: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
        """The stored versions of ``items`` that exist, by (type, id)."""
        answer = self.call(
            "POST",
            BULK_GET_PATH,
            "read the installed saved objects",
            json=[{"type": item["type"], "id": item["id"]} for item in items],
        )
        found: dict[tuple[str, str], Mapping[str, Any]] = {}
        for stored in answer.get("saved_objects", ()):
            error = stored.get("error")
            if error is None:
                found[(stored["type"], stored["id"])] = stored
            elif error.get("statusCode") != 404:
                raise SetupError(
                    f"Dashboards could not read saved {stored.get('type')} {stored.get('id')}: "
                    f"{error.get('message') or error}"
                )
        return found

    def import_objects(self, items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        answer: Mapping[str, Any] = self.call(
            "POST",
            IMPORT_PATH,
            "import the saved objects",
            params={"overwrite": "true"},
            files={"file": (BUNDLE_FILE, encode_ndjson(items), "application/ndjson")},
        )
        return answer


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MESSAGE_LIMIT]
    if isinstance(body, Mapping):
        return str(body.get("message") or body.get("error") or body)[:_MESSAGE_LIMIT]
    return str(body)[:_MESSAGE_LIMIT]


def _keyed(items: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[str, str], Mapping[str, Any]]]:
    return [((item["type"], item["id"]), item) for item in items]


def _planned(item: Mapping[str, Any], stored: Mapping[str, Any] | None) -> Status:
    if stored is None:
        return "created"

    def references(value: Any) -> list[tuple[str, str, str]]:
        return sorted((ref["name"], ref["type"], ref["id"]) for ref in value or ())

    same = (
        stored.get("attributes") == item["attributes"]
        and references(stored.get("references")) == references(item["references"])
        and (stored.get("migrationVersion") or {}) == item["migrationVersion"]
    )
    return "unchanged" if same else "updated"


def _failure(item: Mapping[str, Any]) -> str:
    error = item.get("error", {})
    kind = error.get("type", "unknown")
    detail = ""
    if kind == "missing_references":
        detail = ": " + ", ".join(f"{ref.get('type')} {ref.get('id')}" for ref in error.get("references", ()))
    elif error.get("message"):
        detail = f": {error['message']}"
    title = item.get("title") or item.get("meta", {}).get("title") or item.get("id")
    return f"{item.get('type')} {title!r}: {kind}{detail}"


def _imported(
    items: Sequence[Mapping[str, Any]], answer: Mapping[str, Any], done: list[StepResult]
) -> dict[tuple[str, str], StepResult]:
    """What the import did to each of ``items``; ``done`` are the results so far, for the error."""
    if answer.get("success") is not True:
        failures = (
            "; ".join(_failure(error) for error in answer.get("errors", ())) or str(answer)[:_MESSAGE_LIMIT]
        )
        raise SetupError(f"Dashboards did not import the saved objects: {failures}", done)
    reported = {(r.get("type"), r.get("id")): r for r in answer.get("successResults", ())}
    imported: dict[tuple[str, str], StepResult] = {}
    for item in items:
        result = reported.get((item["type"], item["id"]))
        if result is None:
            raise SetupError(
                f"Dashboards reported success but did not list saved {item['type']} {item['id']} as imported",
                [*done, *imported.values()],
            )
        status: Status = "updated" if result.get("overwrite") else "created"
        imported[(item["type"], item["id"])] = StepResult(_step(item, status), status)
    return imported


def install(
    settings: DashboardsSettings,
    items: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    session: requests.Session | None = None,
) -> list[StepResult]:
    """Create or update ``items`` in Dashboards; one result per object, in order.

    Objects already installed as they are come back ``unchanged`` and are not sent;
    ``dry_run`` reads and reports, and changes nothing. Raises ``SetupError``.
    """
    http = session or requests.Session()
    try:
        client = _Dashboards(settings, http)
        if settings.tenant is not None:
            client.check_tenant(settings.tenant)
        stored = client.stored(items)
        planned = {
            (item["type"], item["id"]): _planned(item, stored.get((item["type"], item["id"])))
            for item in items
        }
        results = {key: StepResult(_step(item, planned[key]), planned[key]) for key, item in _keyed(items)}
        changed = [item for key, item in _keyed(items) if planned[key] != "unchanged"]
        if changed and not dry_run:
            done = [result for key, result in results.items() if planned[key] == "unchanged"]
            results.update(_imported(changed, client.import_objects(changed), done))
        return list(results.values())
    finally:
        if session is None:
            http.close()
