"""The review app: a dermatologist goes through an imported worklist case by case — the image, the diagnosis
and pattern scores, the eight Grad-CAM maps (drawn in the page from the raw arrays, ``bcc.deploy.maps_js``)
— and records a verdict: BCC yes/no and the patterns present.

Access. The server binds to 127.0.0.1 only and answers only requests addressed to ``localhost`` /
``127.0.0.1`` (a page elsewhere cannot reach it by DNS rebinding), so no image or score leaves the
machine. A reviewer gives their name (kept in a signed session cookie); it is the rater name their
verdicts are exported under. Every form carries a per-session token (no other site can post a verdict),
Jinja escapes everything the pages show, and each response forbids any script but the maps' own (by
hash), framing, and caching. Reviewers do not see each other's verdicts: Dawid–Skene assumes raters who
decide independently.

Two reviewers at once: each verdict is its own transaction, unique per (case, reviewer) — recording
again replaces one's own verdict, never another's — and SQLite runs in WAL mode (``bcc.review.db``).
"""
from __future__ import annotations

import datetime as dt
import re
import secrets

import numpy as np
from flask import Flask, Response, abort, redirect, render_template_string, request, session, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bcc.core.patterns import CODES, NAMES, clinical_rule
from bcc.deploy.maps_js import SCRIPT, csp_hash
from bcc.deploy.report_html import guarantee_html, maps_html
from bcc.review.db import Case, Verdict, Worklist

REVIEWER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")  # becomes a rater name in annotations.csv
LOCAL_HOSTS = {"localhost", "127.0.0.1"}

BASE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{ title }} — bcc review</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header a{color:#fff}header form{margin-left:auto}main{padding:16px 20px}
table{border-collapse:collapse;background:#fff}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.case{display:flex;gap:20px;flex-wrap:wrap;align-items:flex-start}.case img.lesion{width:420px;max-width:100%;height:auto}
.cams{display:flex;gap:8px;flex-wrap:wrap;width:100%}figure{margin:0;width:160px;font-size:12px;text-align:center}
figure canvas{width:160px;height:auto;display:block}figure.on figcaption{font-weight:700}
fieldset{background:#fff;border:1px solid #ccc;margin:8px 0}.flag{background:#fff4dc;padding:6px}
.saved{background:#e6f4ea;padding:6px}
</style></head><body><header><b>bcc review</b>
{% if reviewer %}<span>Reviewer: <b id="reviewer">{{ reviewer }}</b></span><a href="{{ url_for('home') }}">Worklists</a>
<form method="post" action="{{ url_for('logout') }}"><input type="hidden" name="token" value="{{ token }}">
<button>Sign out</button></form>{% endif %}</header><main>{{ body|safe }}</main>
{% if script %}<script>{{ script|safe }}</script>{% endif %}</body></html>"""

LOGIN = """<h1>Who is reviewing?</h1><form method="post" action="{{ url_for('login') }}">
<input type="hidden" name="token" value="{{ token }}"><label>Your name (it becomes your rater name in
annotations.csv): <input name="reviewer" id="name" required maxlength="40" pattern="[A-Za-z0-9][A-Za-z0-9 ._\\-]*">
</label> <button id="start">Start</button></form>{% if error %}<p class="flag">{{ error }}</p>{% endif %}"""

HOME = """<h1>Worklists</h1><table><tr><th>worklist</th><th>cases</th><th>reviewed by you</th><th>model</th></tr>
{% for w, n, mine in rows %}<tr><td><a href="{{ url_for('worklist', wid=w.id) }}">{{ w.name }}</a></td><td>{{ n }}</td>
<td>{{ mine }}</td><td>{{ w.model }}</td></tr>{% else %}<tr><td colspan="4">No worklist yet:
<code>python -m bcc.review import &lt;bcc.predict output folder&gt;</code></td></tr>{% endfor %}</table>"""

WORKLIST = """<h1>{{ w.name }}</h1>{{ guarantee|safe }}<table id="cases"><tr><th>#</th><th>image</th><th>p(BCC)</th>
<th>diagnosis</th><th>flag</th><th>your verdict</th></tr>
{% for c in cases %}<tr data-case-id="{{ c.id }}"><td>{{ c.rank }}</td><td><a href="{{ url_for('case', cid=c.id) }}">
{{ c.image }}</a></td><td>{{ '%.2f' % c.p_bcc }}</td><td>{{ c.diagnosis_verdict }}</td>
<td>{{ 'review' if c.review_reason else '' }}</td><td class="mine">{{ mine.get(c.id, '') }}</td></tr>{% endfor %}</table>"""

CASE = """<p><a href="{{ url_for('worklist', wid=c.worklist_id) }}">← {{ c.worklist.name }}</a> · case #{{ c.rank }}
of {{ total }}</p>{% if saved %}<p class="saved" id="saved">Verdict recorded.</p>{% endif %}
<section class="case" data-case="{{ c.id }}"><img class="lesion" alt="{{ c.image }}"
src="{{ url_for('image', cid=c.id) }}"><div><h1 id="image-name">{{ c.image }}</h1>
<p>Diagnosis head: <b id="diagnosis">{{ c.diagnosis_verdict }}</b> (p(BCC) = <span id="p-bcc">{{ '%.2f' % c.p_bcc }}</span>);
clinical rule over the detected patterns: <b>{{ c.rule_verdict }}</b></p>
{% if c.review_reason %}<p class="flag">Flagged: {{ c.review_reason }}</p>{% endif %}
<table id="scores">{% for code, name, p, on in patterns %}<tr><td>{{ code }}</td><td>{{ name }}</td>
<td>{{ 'not trained' if p is none else '%.2f' % p }}</td><td>{{ 'detected' if on else '' }}</td></tr>{% endfor %}</table>
<form method="post" id="verdict"><input type="hidden" name="token" value="{{ token }}">
<fieldset><legend>BCC?</legend><label><input type="radio" name="bcc" value="1" id="bcc-yes" required
{{ 'checked' if v and v.bcc }}> yes</label> <label><input type="radio" name="bcc" value="0" id="bcc-no"
{{ 'checked' if v and not v.bcc }}> no</label></fieldset>
<fieldset><legend>Patterns present</legend>{% for code, name, p, on in patterns %}<label><input type="checkbox"
name="pattern" value="{{ code }}" id="pattern-{{ code }}" {{ 'checked' if v and v.patterns.get(code) }}> {{ code }}
{{ name }}</label><br>{% endfor %}</fieldset>
<label>Note <input name="note" id="note" maxlength="500" value="{{ v.note if v else '' }}"></label>
<button id="record">Record verdict</button></form>
{% if v and rule != v.bcc %}<p class="flag" id="rule-warning">Your BCC verdict differs from the clinical rule over the
patterns you marked (PN ⇒ non-BCC; any other pattern ⇒ BCC): mark the patterns you see, so the verdict
trains the pattern heads too.</p>{% endif %}</div>{{ maps|safe }}</section>"""


def create_app(sessions: sessionmaker[Session], secret: bytes | None = None) -> Flask:
    """The review app over the database `sessions` open (``bcc.review.db.open_db``)."""
    app = Flask("bcc.review")
    app.secret_key = secret or secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True, MAX_CONTENT_LENGTH=64 * 1024)

    def page(title: str, body_template: str, script: bool = False, **ctx) -> str:
        body = render_template_string(body_template, token=_token(), **ctx)
        return render_template_string(BASE, title=title, body=body, reviewer=session.get("reviewer"),
                                      token=_token(), script=SCRIPT if script else "")

    @app.before_request
    def guard():
        if request.host.rsplit(":", 1)[0] not in LOCAL_HOSTS:
            abort(403)  # DNS rebinding: only pages addressed to this machine by its own name
        if request.method == "POST" and not secrets.compare_digest(request.form.get("token", ""), _token()):
            abort(400, "stale or missing form token: reload the page")
        if request.endpoint not in ("home", "login", "static") and not session.get("reviewer"):
            return redirect(url_for("home"))
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
            f"script-src {csp_hash()}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def home():
        reviewer = session.get("reviewer")
        if not reviewer:
            return page("Sign in", LOGIN, error=request.args.get("error"))
        with sessions() as s:
            counts = dict(s.execute(select(Case.worklist_id, func.count()).group_by(Case.worklist_id)).all())
            mine = dict(s.execute(select(Case.worklist_id, func.count()).join(Verdict)
                                  .where(Verdict.reviewer == reviewer).group_by(Case.worklist_id)).all())
            rows = [(w, counts.get(w.id, 0), mine.get(w.id, 0)) for w in s.scalars(select(Worklist).order_by(Worklist.id))]
        return page("Worklists", HOME, rows=rows)

    @app.post("/login")
    def login():
        name = request.form.get("reviewer", "").strip()
        if not REVIEWER.fullmatch(name):
            return redirect(url_for("home", error="A name of 1–40 letters, digits, spaces, '.', '_' or '-', "
                                                  "starting with a letter or digit."))
        session["reviewer"] = name
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("home"))

    @app.get("/worklist/<int:wid>")
    def worklist(wid: int):
        with sessions() as s:
            w = s.get(Worklist, wid) or abort(404)
            cases = list(w.cases)
            mine = {v.case_id: ("BCC" if v.bcc else "non-BCC") for v in s.scalars(
                select(Verdict).join(Case).where(Case.worklist_id == wid, Verdict.reviewer == session["reviewer"]))}
            return page(w.name, WORKLIST, w=w, cases=cases, mine=mine, guarantee=guarantee_html(w.guarantee))

    @app.route("/case/<int:cid>", methods=["GET", "POST"])
    def case(cid: int):
        reviewer = session["reviewer"]
        with sessions() as s:
            c = s.get(Case, cid) or abort(404)
            if request.method == "POST":
                _record(s, c, reviewer)
                nxt = s.scalar(select(Case.id).where(Case.worklist_id == c.worklist_id, Case.rank > c.rank)
                               .order_by(Case.rank).limit(1))
                return redirect(url_for("case", cid=nxt, saved=c.id) if nxt else url_for("worklist", wid=c.worklist_id))
            v = s.scalar(select(Verdict).where(Verdict.case_id == cid, Verdict.reviewer == reviewer))
            th = (c.worklist.thresholds or {}).get("patterns") or {}
            patterns = [(code, NAMES[code], c.scores[code],
                         c.scores[code] is not None and c.scores[code] >= float(th.get(code, 0.5))) for code in CODES]
            rule = None if v is None else bool(clinical_rule(np.array([[int(v.patterns.get(k, 0)) for k in CODES]]))[0])
            detected = [code for code, _, _, on in patterns if on]
            total = s.scalar(select(func.count()).where(Case.worklist_id == c.worklist_id))
            return page(c.image, CASE, script=c.maps is not None, c=c, v=v, patterns=patterns, rule=rule, total=total,
                        saved=request.args.get("saved"),
                        maps=maps_html(c.cams(), detected, c.view, c.worklist.not_trained))

    @app.get("/case/<int:cid>/image.jpg")
    def image(cid: int):
        with sessions() as s:
            c = s.get(Case, cid) or abort(404)
            return Response(c.jpeg, mimetype="image/jpeg")

    return app


def _token() -> str:
    if "token" not in session:
        session["token"] = secrets.token_urlsafe(24)
    return session["token"]


def _record(s: Session, c: Case, reviewer: str) -> None:
    """Insert or replace `reviewer`'s verdict on `c` (one transaction; a concurrent insert of the same pair
    — the reviewer's second tab — becomes an update)."""
    if request.form.get("bcc") not in ("0", "1"):
        abort(400, "choose BCC yes or no")
    marked = set(request.form.getlist("pattern"))
    if marked - set(CODES):
        abort(400, f"unknown pattern code(s) {sorted(marked - set(CODES))}")
    values = {"bcc": request.form["bcc"] == "1", "patterns": {k: int(k in marked) for k in CODES},
              "note": request.form.get("note", "")[:500], "recorded": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
    for _ in range(2):
        v = s.scalar(select(Verdict).where(Verdict.case_id == c.id, Verdict.reviewer == reviewer))
        if v is None:
            s.add(Verdict(case_id=c.id, reviewer=reviewer, **values))
        else:
            for k, val in values.items():
                setattr(v, k, val)
        try:
            s.commit()
            return
        except IntegrityError:
            s.rollback()
    abort(409, "the verdict changed while it was being recorded; record it again")
