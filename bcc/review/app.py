"""The review app: a dermatologist goes through an imported worklist case by case — the image, the diagnosis
and pattern scores, the eight Grad-CAM maps (drawn in the page from the raw arrays, ``bcc.deploy.maps_js``)
— and records a verdict: BCC yes/no and the patterns present.

Access. The server binds to 127.0.0.1 only and answers only requests addressed to ``localhost`` /
``127.0.0.1`` (a page elsewhere cannot reach it by DNS rebinding), so no image or score leaves the
machine. Reviewers sign in with the account an admin gave them (``bcc.review.accounts``: hashed
passwords, server-side sessions that sign-out and a password change end; Flask-Login); the cookie has
its own name (``bcc_review``), is HTTP-only and same-site. Every form is a Flask-WTF form with its CSRF
token; the pages are Jinja templates extending the triage report's base (``bcc.deploy.report_html``),
autoescaped; messages are flashed (never read from the URL); each response forbids any script but the
maps' own (by hash), framing, and caching. Reviewers do not see each other's verdicts: Dawid–Skene
assumes raters who decide independently.

Verdicts. Recording adds a version (``bcc.review.db.Verdict``): the earlier ones stay, with who and when.
Each form carries a submission id recorded once, so a form sent twice is one verdict.
"""
from __future__ import annotations

import secrets

import numpy as np
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException
from wtforms import HiddenField, PasswordField, RadioField, SelectMultipleField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, Optional, Regexp

from bcc.core.patterns import CODES, OUTPUTS, clinical_rule
from bcc.deploy.maps_js import csp_hash
from bcc.deploy.report_html import JINJA_OPTIONS, Guarantee, configure, maps_view, pattern_rows
from bcc.deploy.thresholds import Thresholds
from bcc.review import accounts
from bcc.review.db import Case, Verdict, Worklist, now

LOCAL_HOSTS = {"localhost", "127.0.0.1"}
COOKIE = "bcc_review"


class LoginForm(FlaskForm):
    name = StringField(validators=[InputRequired(), Length(max=80)])
    password = PasswordField(validators=[InputRequired(), Length(max=200)])


class PasswordForm(FlaskForm):
    current = PasswordField(validators=[InputRequired(), Length(max=200)])
    new = PasswordField(validators=[InputRequired(), Length(min=accounts.MIN_PASSWORD, max=200)])
    repeat = PasswordField(validators=[InputRequired(), EqualTo("new", message="the two new passwords differ")])


class VerdictForm(FlaskForm):
    bcc = RadioField(choices=[("1", "yes"), ("0", "no")], validators=[InputRequired("choose BCC yes or no")])
    pattern = SelectMultipleField(choices=[(c, c) for c in CODES])
    note = StringField(validators=[Length(max=500)])
    submission = HiddenField(validators=[Optional(), Regexp(r"^[0-9a-f]{32}$")])


def create_app(sessions: sessionmaker[Session], secret: bytes | None = None) -> Flask:
    """The review app over the database `sessions` open (``bcc.review.db.open_db``)."""
    app = Flask("bcc.review")
    app.jinja_options = {**app.jinja_options, **JINJA_OPTIONS}
    app.register_blueprint(Blueprint("report", "bcc.deploy", template_folder="templates"))  # base.html, macros
    configure(app.jinja_env)
    app.secret_key = secret or secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True,
                      MAX_CONTENT_LENGTH=64 * 1024, WTF_CSRF_TIME_LIMIT=None, REMEMBER_COOKIE_NAME=f"{COOKIE}_remember")
    CSRFProtect(app)
    login = LoginManager(app)
    login.login_view = "login_page"
    login.login_message = "Sign in to continue."

    @login.user_loader
    def load(token: str):
        return accounts.resolve(sessions, token)

    @app.before_request
    def guard():
        if request.host.rsplit(":", 1)[0] not in LOCAL_HOSTS:
            abort(403)  # DNS rebinding: only pages addressed to this machine by its own name

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
            f"script-src {csp_hash()}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(CSRFError)
    def stale_form(e: CSRFError):
        return render_template("error.html", title="Form refused", code=400,
                               message="This form's security token is missing or stale (the page was open across a "
                                       "sign-out or a server restart, or came from another site): reload the page "
                                       "and send it again."), 400

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return render_template("error.html", title=e.name, code=e.code, message=e.description), e.code or 500

    @app.route("/login", methods=["GET", "POST"])
    def login_page():
        form = LoginForm()
        if form.validate_on_submit():
            r = accounts.authenticate(sessions, form.name.data or "", form.password.data or "")
            if r is None:
                flash("Unknown name or wrong password.", "error")
                return redirect(url_for("login_page"))
            session.clear()  # nothing of the signed-out session carries over
            login_user(accounts.open_session(sessions, r))
            return redirect(url_for("home"))
        if request.method == "POST":
            flash("Give your name and password.", "error")
        return render_template("login.html", title="Sign in", form=form)

    @app.post("/logout")
    @login_required
    def logout():
        accounts.close_session(sessions, current_user.token)
        logout_user()
        session.clear()
        flash("Signed out.", "info")
        return redirect(url_for("login_page"))

    @app.route("/password", methods=["GET", "POST"])
    @login_required
    def password():
        form = PasswordForm()
        if form.validate_on_submit():
            me = accounts.authenticate(sessions, current_user.name, form.current.data or "")
            if me is None:
                flash("The current password is wrong.", "error")
                return redirect(url_for("password"))
            accounts.set_password(sessions, me.name, form.new.data or "")  # ends every session, this one too
            session.clear()
            login_user(accounts.open_session(sessions, me))
            flash("Password changed; every other browser signed in as you is signed out.", "info")
            return redirect(url_for("home"))
        for errors in form.errors.values():
            for message in errors:
                flash(str(message), "error")
        return render_template("password.html", title="Password", form=form, minimum=accounts.MIN_PASSWORD)

    @app.get("/")
    @login_required
    def home():
        with sessions() as s:
            counts = dict(s.execute(select(Case.worklist_id, func.count()).group_by(Case.worklist_id)).all())
            mine = dict(s.execute(select(Case.worklist_id, func.count(func.distinct(Verdict.case_id))).join(Verdict)
                                  .where(Verdict.reviewer_id == current_user.reviewer_id)
                                  .group_by(Case.worklist_id)).all())
            rows = [(w, counts.get(w.id, 0), mine.get(w.id, 0)) for w in s.scalars(select(Worklist).order_by(Worklist.id))]
        return render_template("home.html", title="Worklists", rows=rows)

    @app.get("/worklist/<int:wid>")
    @login_required
    def worklist(wid: int):
        with sessions() as s:
            w = s.get(Worklist, wid) or abort(404)
            mine = {c: "BCC" if v.bcc else "non-BCC" for c, v in _current(s, current_user.reviewer_id, wid).items()}
            return render_template("worklist.html", title=w.name, w=w, cases=list(w.cases), mine=mine,
                                   g=Guarantee.read(w.guarantee, f"worklist {w.name}"))

    @app.route("/case/<int:cid>", methods=["GET", "POST"])
    @login_required
    def case(cid: int):
        form = VerdictForm()
        with sessions() as s:
            c = s.get(Case, cid) or abort(404)
            if request.method == "POST":
                if not form.validate():
                    abort(400, "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in form.errors.items()))
                _record(s, c, current_user.reviewer_id, form)
                flash("Verdict recorded.", "saved")
                nxt = s.scalar(select(Case.id).where(Case.worklist_id == c.worklist_id, Case.rank > c.rank)
                               .order_by(Case.rank).limit(1))
                return redirect(url_for("case", cid=nxt) if nxt else url_for("worklist", wid=c.worklist_id))
            mine = s.scalars(select(Verdict).where(Verdict.case_id == cid, Verdict.reviewer_id == current_user.reviewer_id)
                             .order_by(Verdict.version.desc())).all()
            v = mine[0] if mine else None
            w = c.worklist
            rows = pattern_rows([c.scores[o] for o in OUTPUTS], Thresholds.from_dict(w.thresholds, f"worklist {w.name}"))
            rule = None if v is None else bool(clinical_rule(np.array([[int(v.patterns.get(k, 0)) for k in CODES]]))[0])
            total = s.scalar(select(func.count()).where(Case.worklist_id == c.worklist_id))
            return render_template(
                "case.html", title=c.image, c=c, w=w, v=v, versions=len(mine), rows=rows, rule=rule, total=total,
                submission=secrets.token_hex(16), draw_maps=c.maps is not None,
                maps=maps_view(c.cams(), [r.code for r in rows if r.on], c.view, w.not_trained))

    @app.get("/case/<int:cid>/image.jpg")
    @login_required
    def image(cid: int):
        with sessions() as s:
            c = s.get(Case, cid) or abort(404)
            return Response(c.jpeg, mimetype="image/jpeg")

    return app


def _current(s: Session, reviewer_id: int, wid: int) -> dict[int, Verdict]:
    """Case id → the reviewer's current (latest) verdict, over worklist `wid`."""
    latest = (select(Verdict.case_id, func.max(Verdict.version).label("v")).join(Case)
              .where(Case.worklist_id == wid, Verdict.reviewer_id == reviewer_id).group_by(Verdict.case_id).subquery())
    q = select(Verdict).join(latest, (Verdict.case_id == latest.c.case_id) & (Verdict.version == latest.c.v)) \
        .where(Verdict.reviewer_id == reviewer_id)
    return {v.case_id: v for v in s.scalars(q)}


def _record(s: Session, c: Case, reviewer_id: int, form: VerdictForm) -> None:
    """Add the reviewer's next verdict version on `c` (one transaction). Two tabs recording at once get
    consecutive versions; a submission id already recorded is not recorded again."""
    submission = form.submission.data or secrets.token_hex(16)
    for _ in range(5):
        version = 1 + (s.scalar(select(func.max(Verdict.version)).where(
            Verdict.case_id == c.id, Verdict.reviewer_id == reviewer_id)) or 0)
        s.add(Verdict(case_id=c.id, reviewer_id=reviewer_id, version=version, bcc=form.bcc.data == "1",
                      patterns={k: int(k in (form.pattern.data or [])) for k in CODES}, note=form.note.data or "",
                      recorded=now(), submission=submission))
        try:
            s.commit()
            return
        except IntegrityError:
            s.rollback()
            if s.scalar(select(Verdict.id).where(Verdict.submission == submission)) is not None:
                return  # this very form was recorded already (sent twice)
    abort(409, "the verdict changed while it was being recorded; record it again")

