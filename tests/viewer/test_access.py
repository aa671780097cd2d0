"""Access and the page's filters: a URL narrows the grant, and filters round-trip through the URL."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.event import Actor
from audit_middleware.query.model import QueryError
from audit_middleware.viewer.access import Access, ForbiddenError, narrow
from audit_middleware.viewer.filters import ViewFilters
from audit_middleware.viewer.http import parse_query

ANN = Actor(id="u1")


@pytest.mark.parametrize(
    ("projects", "tenant", "project", "answer"),
    [
        pytest.param(None, None, None, (None, None), id="whole-tenant"),
        pytest.param(None, "acme", "p9", (None, "p9"), id="any-project-of-the-tenant"),
        pytest.param(("p1", "p2"), None, "p2", (("p1", "p2"), "p2"), id="inside-the-list"),
        pytest.param(("p1",), None, None, (("p1",), None), id="the-list-applies"),
    ],
)
def test_narrowing(projects, tenant, project, answer):
    """The URL's tenant and project are accepted inside the grant."""
    assert narrow(Access("acme", ANN, projects=projects), tenant, project) == answer


@pytest.mark.parametrize(("tenant", "project"), [("globex", None), (None, "p3"), ("globex", "p1")])
def test_widening_is_forbidden(tenant, project):
    """Another tenant, or a project outside the allow-list, is refused."""
    with pytest.raises(ForbiddenError):
        narrow(Access("acme", ANN, projects=("p1",)), tenant, project)


def test_access_checks_what_it_is_given():
    """A tenant and an Actor are required; projects is a list of ids, not one string."""
    with pytest.raises(AuditValidationError):
        Access("", ANN)
    with pytest.raises(AuditValidationError):
        Access("acme", "ann")  # type: ignore[arg-type]
    with pytest.raises(AuditValidationError):
        Access("acme", ANN, projects="p1")  # type: ignore[arg-type]


def test_filters_round_trip_through_the_url():
    """The query string of a view reads back as the same view; unset filters stay out of it."""
    filters = ViewFilters.from_params(
        parse_query(
            "q=web&action=delete&type=pod&range=custom&from=2026-11-01T10:00&to=2026-11-02&user=a%40b&tz=Europe/Berlin&reads=1"
        )
    )
    assert ViewFilters.from_params(parse_query(filters.query_string()[1:])) == filters
    assert ViewFilters().query_string() == ""
    assert ViewFilters.from_params(parse_query("range=7d&from=2026-01-01")).params() == [("range", "7d")]


def test_filters_build_the_query_of_the_reader():
    """The query is the reader's tenant, with the custom range read in the view's zone and reads hidden."""
    filters = ViewFilters.from_params(parse_query("range=custom&from=2026-11-01T10:00&tz=Europe/Berlin"))
    query = filters.query(Access("acme", ANN, projects=("p1",)), page_size=10)
    assert (query.tenant, query.projects, query.page_size) == ("acme", ("p1",), 10)
    assert query.start is not None
    assert query.start.isoformat() == "2026-11-01T09:00:00+00:00"
    assert query.exclude_actions == ("audit_viewed", "audit_exported")
    assert not filters.is_live or filters.end == ""


@pytest.mark.parametrize("query", ["range=1y", "tz=Nowhere/City", "q=" + "x" * 201, "user=" + "x" * 300])
def test_bad_filters(query):
    """Filters outside their forms are a QueryError with a message for the reader."""
    with pytest.raises(QueryError):
        ViewFilters.from_params(parse_query(query))
