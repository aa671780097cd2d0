"""One translation of client errors: a sentence per kind of failure, the server's reason, explained()."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConflictError,
    ConnectionError,
    ConnectionTimeout,
    NotFoundError,
    SSLError,
    TransportError,
)

from audit_middleware.errors import AuditError
from audit_middleware.opensearch.errors import (
    describe,
    explained,
    plugin_index_starting,
    reason,
    retry_while_plugin_index_starts,
    where,
)


class SetupError(AuditError):
    """An error type of a caller's own, for explained()."""


def server_error(kind: str, text: str) -> dict[str, object]:
    """The body OpenSearch sends with an error status."""
    return {"error": {"type": kind, "reason": text, "root_cause": [{"type": kind, "reason": text}]}}


CLIENT = OpenSearch(["https://search.example:9243/base", "http://127.0.0.1:9201"])
WHAT = "install the index templates"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            AuthenticationException(401, "security_exception", server_error("security_exception", "no")),
            "OpenSearch at https://search.example:9243/base, http://127.0.0.1:9201 rejected the "
            "credentials (401) when trying to install the index templates: check "
            "AUDIT_OPENSEARCH_USERNAME / AUDIT_OPENSEARCH_PASSWORD, or the AWS credentials when "
            "signing with SigV4",
        ),
        (
            AuthorizationException(
                403, "security_exception", server_error("security_exception", "no permissions for [x]")
            ),
            "the OpenSearch user may not install the index templates "
            "(403 security_exception: no permissions for [x]): cluster:admin/ism/*",
        ),
        (
            ConflictError(409, "version_conflict", server_error("version_conflict_engine_exception", "seq")),
            "could not install the index templates: it was changed by someone else meanwhile "
            "(version_conflict_engine_exception: seq); try again",
        ),
        (
            SSLError("N/A", "certificate verify failed", OSError("ssl")),
            "TLS handshake with OpenSearch at https://search.example:9243/base, http://127.0.0.1:9201 "
            "failed when trying to install the index templates: certificate verify failed; set "
            "AUDIT_OPENSEARCH_CA_CERTS to the CA bundle that signed the server certificate",
        ),
        (
            ConnectionTimeout("TIMEOUT", "timed out", OSError("t")),
            "OpenSearch at https://search.example:9243/base, http://127.0.0.1:9201 did not answer in "
            "time when trying to install the index templates",
        ),
        (
            ConnectionError("N/A", "Connection refused", OSError("c")),
            "cannot connect to OpenSearch at https://search.example:9243/base, http://127.0.0.1:9201 "
            "to install the index templates: Connection refused",
        ),
        (
            NotFoundError(
                404, "index_not_found_exception", server_error("index_not_found_exception", "no such index")
            ),
            "OpenSearch could not install the index templates: index_not_found_exception: no such index",
        ),
        (
            TransportError(500, "internal", server_error("illegal_state_exception", "broken")),
            "OpenSearch refused to install the index templates: HTTP 500 illegal_state_exception: broken",
        ),
    ],
    ids=["401", "403", "409", "tls", "timeout", "connection", "404", "other"],
)
def test_each_error_type_gives_its_sentence(exc: TransportError, expected: str) -> None:
    """describe() names what was being done and what to check, per kind of failure."""
    assert describe(exc, WHAT, client=CLIENT, permissions="cluster:admin/ism/*") == expected


def test_without_a_client_no_address_is_named() -> None:
    """Without a client the sentence leaves out the 'at ...' part."""
    exc = ConnectionError("N/A", "Connection refused", OSError("c"))
    assert (
        describe(exc, "read the status")
        == "cannot connect to OpenSearch to read the status: Connection refused"
    )


def test_a_403_without_permissions_names_none() -> None:
    """When the needed permissions are not given, the 403 sentence ends with the reason."""
    exc = AuthorizationException(403, "security_exception", server_error("security_exception", "denied"))
    assert describe(exc, "search") == "the OpenSearch user may not search (403 security_exception: denied)"


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            server_error("mapper_parsing_exception", "failed to parse [user]"),
            "mapper_parsing_exception: failed to parse [user]",
        ),
        ({"error": {"type": "cluster_block_exception"}}, "cluster_block_exception"),
        ({"error": {"reason": "no type"}}, "fallback: no type"),
        ({"error": "plain text error"}, "plain text error"),
        ({"status": 500}, "fallback"),
        ("<html>bad gateway</html>", "fallback"),
        (None, "fallback"),
    ],
    ids=["type-and-reason", "type-only", "reason-only", "text", "no-error", "not-json", "none"],
)
def test_reason_reads_the_servers_error(info: object, expected: str) -> None:
    """reason() prefers the server's ``type: reason``, else its error text, else the client's."""
    assert reason(TransportError(500, "fallback", info)) == expected


def test_where_lists_the_clients_urls() -> None:
    """where() names each host with its scheme, port and prefix."""
    assert where(CLIENT) == "https://search.example:9243/base, http://127.0.0.1:9201"


@pytest.mark.parametrize("client", [object(), None], ids=["no-transport", "none"])
def test_where_without_hosts(client: object) -> None:
    """An object without hosts is described generically rather than failing."""
    assert where(client) == "the configured hosts"


def test_explained_raises_the_given_error_type() -> None:
    """A client error inside the block becomes the caller's error type, with the sentence, chained."""
    original = AuthorizationException(403, "security_exception", server_error("security_exception", "nope"))
    with (
        pytest.raises(SetupError) as raised,
        explained(WHAT, SetupError, client=CLIENT, permissions="manage"),
    ):
        raise original
    assert str(raised.value) == describe(original, WHAT, client=CLIENT, permissions="manage")
    assert raised.value.__cause__ is original


def test_explained_lets_other_exceptions_pass() -> None:
    """Errors that are not the client's pass through untouched."""
    problem = KeyError("mapping")
    with pytest.raises(KeyError) as raised, explained(WHAT, SetupError):
        raise problem
    assert raised.value is problem


def test_explained_without_an_error_does_nothing() -> None:
    """A block that succeeds runs to its end."""
    ran = []
    with explained(WHAT, SetupError):
        ran.append(True)
    assert ran == [True]


def _server_error(status: int, kind: str, text: str) -> TransportError:
    error_type = ConflictError if status == 409 else TransportError
    return error_type(status, kind, {"error": {"type": kind, "reason": text}})


@pytest.mark.parametrize(
    ("error", "starting"),
    [
        pytest.param(
            _server_error(409, "status_exception", "index [.opendistro-ism-config/S7yV8] already exists"),
            True,
            id="two-setups-make-the-config-index",
        ),
        pytest.param(
            _server_error(503, "search_phase_execution_exception", "all shards failed"),
            True,
            id="shard-not-started",
        ),
        pytest.param(
            _server_error(
                409, "version_conflict_engine_exception", "[p]: version conflict, required seqNo [3]"
            ),
            False,
            id="a-real-conflict-over-the-policy",
        ),
        pytest.param(_server_error(400, "illegal_argument_exception", "bad body"), False, id="a-bad-request"),
    ],
)
def test_a_plugin_index_made_on_first_use_is_told_from_real_failures(error, starting):
    """Only the races of a plugin's first-use index (409 already exists, 503) count as 'starting'."""
    assert plugin_index_starting(error) is starting


def test_retry_repeats_while_the_plugin_index_starts_and_not_after_a_real_failure(monkeypatch):
    """The call is repeated through the starting errors; a real failure is raised at once."""
    monkeypatch.setattr("audit_middleware.opensearch.errors.time.sleep", lambda _seconds: None)
    answers: list[object] = [
        _server_error(409, "status_exception", "index [.opendistro-ism-config/x] already exists"),
        _server_error(503, "search_phase_execution_exception", "all shards failed"),
        "stored",
    ]
    calls = []

    def call() -> object:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry_while_plugin_index_starts(call) == "stored"
    assert len(calls) == 3
    refused = _server_error(400, "illegal_argument_exception", "bad body")
    calls.clear()

    def bad() -> object:
        calls.append(1)
        raise refused

    with pytest.raises(TransportError):
        retry_while_plugin_index_starts(bad)
    assert len(calls) == 1
