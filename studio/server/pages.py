"""HTML pages at upstream's addresses. Each is a small template; its script fetches the JSON
API, so the pages and `curl` see the same data. Unknown experiments, projects and users get
a 404 page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from studio.exceptions import NotFoundError
from studio.server.api_runs import context, load
from studio.server.auth import csrf_token, current_principal

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def render(request: Request, template: str, **values: Any) -> Response:
    who = current_principal(request)
    values.setdefault("me", who.name if who else "")
    values.setdefault("csrf", csrf_token(request))
    return request.app.state.templates.TemplateResponse(request, template, values)  # type: ignore[no-any-return]


def table(request: Request, title: str, nav: str, **scope: Any) -> Response:
    return render(request, "table.html", title=title, nav=nav, scope=scope)


@router.get("/")
def mine(request: Request) -> Response:
    return table(request, "My experiments", "mine", scope="mine")


@router.get("/all")
def all_experiments(request: Request) -> Response:
    return table(request, "All experiments", "all", scope="all")


@router.get("/projects")
def projects(request: Request) -> Response:
    return render(request, "projects.html", title="Projects", nav="projects")


@router.get("/project/{name}")
def project(request: Request, name: str) -> Response:
    if not any(p["name"] == name for p in context(request).meta.projects()):
        raise NotFoundError(f"no project {name!r}")
    return render(request, "project.html", title=f"Project {name}", nav="projects", project=name,
                  scope={"scope": "all", "project": name, "sort": "best"})


@router.get("/queues")
def queues(request: Request) -> Response:
    return render(request, "queues.html", title="Queues", nav="queues")


@router.get("/users")
def users(request: Request) -> Response:
    return render(request, "users.html", title="Users", nav="users")


@router.get("/user/{name}")
def user(request: Request, name: str) -> Response:
    if not any(u["name"] == name for u in context(request).meta.users()):
        raise NotFoundError(f"no user {name!r} has experiments here")
    return table(request, f"Experiments of {name}", "users", scope="all", owner=name)


@router.get("/experiment/{key}")
def experiment(request: Request, key: str) -> Response:
    exp = load(context(request), key)
    return render(request, "experiment.html", title=f"Experiment {exp.key}", nav="", key=exp.key)


@router.get("/compare")
def compare(request: Request, keys: str = "") -> Response:
    return render(request, "compare.html", title="Compare experiments", nav="", keys=keys)
