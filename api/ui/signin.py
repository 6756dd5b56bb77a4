"""Signing in to the dashboard with a token, and out again."""

import falcon

from api.ui.access import Access, Visitor
from api.ui.forms import read_form
from api.ui.pages import notice_of, redirect, show_error
from api.ui.templating import render
from service.errors import WarrenError


class SignIn:
    """`GET` shows the token form; `POST` keeps a known token in the browser (see
    `api.ui.access`) and goes to the overview, or shows the form again with a 401."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        visitor = self.access.visitor(req, resp)
        if not visitor.tokens_configured:  # an open dashboard has nothing to sign in to
            redirect(resp, "/ui")
            return
        _form(resp, visitor, notice=notice_of(req))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        visitor = self.access.visitor(req, resp)
        try:
            form = read_form(req)
            self.access.check_csrf(req, visitor, form)
        except WarrenError as exc:
            show_error(resp, visitor, exc)
            return
        if not self.access.sign_in(req, resp, form.get("token", "").strip()):
            _form(resp, visitor, "That token is not one this deployment knows.")
            return
        redirect(resp, "/ui")


class SignOut:
    def __init__(self, access: Access) -> None:
        self.access = access

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        visitor = self.access.visitor(req, resp)
        try:
            self.access.check_csrf(req, visitor, read_form(req))
        except WarrenError as exc:
            show_error(resp, visitor, exc)
            return
        self.access.sign_out(resp)
        redirect(resp, "/ui/signin?notice=signed-out")


def _form(
    resp: falcon.Response, visitor: Visitor, error: str | None = None, notice: str | None = None
) -> None:
    status = falcon.HTTP_401 if error else falcon.HTTP_200
    render(resp, "signin.html", status, visitor=visitor, notice=notice, nav="", error=error)
