//! The pages. Handlers are thin: parse the query, call one query function shared with
//! the API, render. Every filter lives in the URL; every list pages by keyset and
//! exports exactly what it filters.

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use portcullis_storage::{
    Alert, AlertQuery, AlertUpdate, AuditEntry, AuthEvent, AuthFacets, AuthQuery, ObservedLocation, PortalDb, Role,
    Session, SessionQuery, StorageError, Store, Summary, UserQuery, UserSummary,
};
use serde::Deserialize;

use crate::auth::{self, Caller};
use crate::clients::{self, ClientView};
use crate::export::{self, Cursor, EXPORT_PAGE, ExportRow, Format};
use crate::map::{self, MapSvg, Travel};
use crate::text::{encode, query, user_href, utc};
use crate::{Portal, WebError, now_ms};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Rows per page unless `limit` says otherwise.
const PAGE: usize = 100;
/// `limit` at most.
pub(crate) const MAX_LIMIT: usize = 1_000;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/login/code", post(login_code))
        .route("/logout", post(logout))
        .route("/", get(dashboard))
        .route("/users", get(|s, c, q| users(s, c, q, Format::Html)))
        .route("/users/{name}", get(user))
        .route("/sessions", get(|s, c, q| sessions(s, c, q, Format::Html)))
        .route("/auth-log", get(|s, c, q| auth_log(s, c, q, Format::Html)))
        .route("/alerts", get(|s, c, q| alerts(s, c, q, Format::Html)))
        .route("/alerts/{id}", get(alert).post(update_alert))
        .route("/status", get(status))
        .route("/settings", get(settings))
        .route("/audit", get(audit))
        .route("/static/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/static/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
}

/// Creates the first admin account with a random password when there is no account at
/// all, and returns the password (the demo prints it once).
pub fn demo_password_notice(db: &PortalDb) -> Result<Option<String>, StorageError> {
    if !db.accounts()?.is_empty() {
        return Ok(None);
    }
    let password = auth::random_secret().chars().take(20).collect::<String>();
    let hash = auth::hash_password(&password).map_err(StorageError::Invalid)?;
    db.add_account("admin", Role::Admin, &hash, now_ms())?;
    Ok(Some(password))
}

/// What every page's navigation needs.
pub(crate) struct Nav {
    pub name: String,
    pub role: &'static str,
    pub analyst: bool,
    pub admin: bool,
}

impl Nav {
    fn of(caller: &Caller) -> Self {
        Self {
            name: caller.name.clone(),
            role: caller.role.as_str(),
            analyst: caller.may(Role::Analyst),
            admin: caller.may(Role::Admin),
        }
    }
}

/// One table cell, optionally a link.
pub(crate) struct Cell {
    pub text: String,
    pub href: Option<String>,
}

/// A filter of a list: a text box, or a choice among the values present.
pub(crate) struct Filter {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub options: Vec<String>,
}

/// A rendered list: rows, the next page and the exports of the same filter.
pub(crate) struct Table {
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
    pub next: Option<String>,
    pub csv: String,
    pub ndjson: String,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    nav: Nav,
    title: &'static str,
    path: String,
    filters: Vec<Filter>,
    table: Table,
}

/// A row of a list: its export cells, its cursor, its links and its JSON.
pub(crate) trait Listed: ExportRow + Sized {
    fn cursor(&self) -> Cursor;
    /// Cells that link somewhere: (column, href).
    fn links(&self) -> Vec<(usize, String)> {
        Vec::new()
    }
    fn json(&self) -> serde_json::Value;
}

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response()
        }
    }
}

/// A number from a query string; an empty field (a form left blank) is absent.
fn number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
{
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number"))),
    }
}

/// Empty form fields count as absent.
fn given(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn cursor_of(v: &Option<String>) -> Result<Option<Cursor>, WebError> {
    match given(v) {
        None => Ok(None),
        Some(text) => Cursor::decode(&text).map(Some).ok_or_else(|| WebError::BadRequest("invalid cursor".into())),
    }
}

fn limit_of(v: Option<usize>) -> Result<usize, WebError> {
    match v {
        None => Ok(PAGE),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(WebError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

/// The things every list needs to know about where it is.
pub(crate) struct ListSpec {
    pub title: &'static str,
    /// The page's path (the API's for JSON).
    pub path: String,
    /// The filters in force, as query pairs.
    pub pairs: Vec<(&'static str, String)>,
    pub filters: Vec<Filter>,
    pub format: Format,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// Fetches one page of a list: (store, cursor, limit) → rows.
pub(crate) trait Fetch<R>:
    Fn(&mut dyn Store, Option<Cursor>, usize) -> Result<Vec<R>, StorageError> + Send + Sync + Clone + 'static
{
}
impl<R, F> Fetch<R> for F where
    F: Fn(&mut dyn Store, Option<Cursor>, usize) -> Result<Vec<R>, StorageError> + Send + Sync + Clone + 'static
{
}

/// Answers a list in its format: a page (HTML or JSON) or the whole filtered list as a
/// streamed export (audited).
pub(crate) async fn list<R: Listed>(
    portal: &Portal,
    caller: &Caller,
    spec: ListSpec,
    fetch: impl Fetch<R>,
) -> Result<Response, WebError> {
    let pairs: Vec<(&str, &str)> = spec.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if spec.format.is_export() {
        portal.audit(&caller.name, "export", format!("{}{}", spec.path, query(&pairs)), &caller.source).await;
        let portal = portal.clone();
        let name = spec.title.to_lowercase().replace(' ', "-");
        return Ok(export::stream(spec.format, &name, move |cursor| {
            let rows = portal.store_blocking(|s| fetch(s, cursor, EXPORT_PAGE)).map_err(|e| e.to_string())?;
            let next = (rows.len() == EXPORT_PAGE).then(|| rows.last().map(Listed::cursor)).flatten();
            Ok((rows, next))
        }));
    }
    let (cursor, limit) = (spec.cursor.clone(), spec.limit);
    let rows = portal.store(move |s| fetch(s, cursor, limit)).await?;
    let next = (rows.len() == spec.limit).then(|| rows.last().map(|r| r.cursor().encode())).flatten();
    if spec.format == Format::Json {
        let items: Vec<serde_json::Value> = rows.iter().map(Listed::json).collect();
        return Ok(axum::Json(serde_json::json!({ "items": items, "next_cursor": next })).into_response());
    }
    let table = table(&spec.path, &pairs, rows, next);
    Ok(render(&ListPage { nav: Nav::of(caller), title: spec.title, path: spec.path, filters: spec.filters, table }))
}

fn table<R: Listed>(path: &str, pairs: &[(&str, &str)], rows: Vec<R>, next: Option<String>) -> Table {
    let link = |extra: (&str, &str)| {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        all.push(extra);
        format!("{path}{}", query(&all))
    };
    Table {
        columns: R::COLUMNS,
        next: next.as_deref().map(|c| link(("cursor", c))),
        csv: link(("format", "csv")),
        ndjson: link(("format", "ndjson")),
        rows: rows
            .iter()
            .map(|r| {
                let links = r.links();
                r.cells()
                    .into_iter()
                    .enumerate()
                    .map(|(i, text)| Cell { text, href: links.iter().find(|(c, _)| *c == i).map(|(_, h)| h.clone()) })
                    .collect()
            })
            .collect(),
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

// ---------------------------------------------------------------- rows

/// One authentication decision with its unique id.
pub(crate) struct AuthRow(pub i64, pub AuthEvent);

impl ExportRow for AuthRow {
    const COLUMNS: &'static [&'static str] = &[
        "time",
        "user",
        "result",
        "reason_code",
        "method",
        "mfa",
        "nas",
        "client",
        "calling_station_id",
        "country",
        "city",
        "asn",
        "policy",
    ];
    fn cells(&self) -> Vec<String> {
        let e = &self.1;
        let loc = e.location.as_ref();
        vec![
            utc(e.time_ms),
            e.user.clone(),
            e.decision.clone(),
            e.reason_code.to_string(),
            e.method.clone(),
            opt(&e.mfa),
            e.nas.clone(),
            e.client.clone(),
            opt(&e.calling_station_id),
            loc.and_then(|l| l.country.clone()).unwrap_or_default(),
            loc.and_then(|l| l.city.clone()).unwrap_or_default(),
            loc.and_then(|l| l.asn).map(|a| a.to_string()).unwrap_or_default(),
            opt(&e.policy),
        ]
    }
}

impl Listed for AuthRow {
    fn cursor(&self) -> Cursor {
        Cursor { time: self.1.time_ms, id: self.0.to_string() }
    }
    fn links(&self) -> Vec<(usize, String)> {
        vec![(1, user_href(&self.1.user))]
    }
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.1).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), self.0.into());
            o.insert("time".into(), utc(self.1.time_ms).into());
        }
        v
    }
}

pub(crate) struct SessionRow(pub Session);

fn secs(t: Option<i64>) -> String {
    t.map(|t| utc(t.saturating_mul(1000))).unwrap_or_default()
}

impl ExportRow for SessionRow {
    const COLUMNS: &'static [&'static str] = &[
        "started",
        "user",
        "state",
        "stopped",
        "nas",
        "client_ip",
        "device",
        "framed_ip",
        "country",
        "city",
        "session_id",
        "terminate_cause",
    ];
    fn cells(&self) -> Vec<String> {
        let s = &self.0;
        let loc = s.location.as_ref();
        let state = if s.open {
            "open"
        } else if s.stale {
            "stale"
        } else {
            "closed"
        };
        vec![
            secs(Some(s.started_at)),
            opt(&s.user),
            state.into(),
            secs(s.stopped_at),
            s.nas.clone(),
            opt(&s.client_ip),
            opt(&s.device),
            opt(&s.framed_ip),
            loc.and_then(|l| l.country.clone()).unwrap_or_default(),
            loc.and_then(|l| l.city.clone()).unwrap_or_default(),
            opt(&s.session_id),
            opt(&s.terminate_cause),
        ]
    }
}

impl Listed for SessionRow {
    fn cursor(&self) -> Cursor {
        Cursor { time: self.0.started_at, id: self.0.session_key.clone() }
    }
    fn links(&self) -> Vec<(usize, String)> {
        self.0.user.as_deref().map(|u| vec![(1, user_href(u))]).unwrap_or_default()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}

pub(crate) struct AlertRow(pub Alert);

impl ExportRow for AlertRow {
    const COLUMNS: &'static [&'static str] =
        &["id", "created", "severity", "kind", "user", "status", "classification", "count", "message"];
    fn cells(&self) -> Vec<String> {
        let a = &self.0;
        vec![
            a.id.to_string(),
            a.created_at.clone(),
            a.severity.clone(),
            a.kind.clone(),
            a.user.clone(),
            a.status.clone(),
            opt(&a.classification),
            a.count.to_string(),
            a.message.clone(),
        ]
    }
}

impl Listed for AlertRow {
    fn cursor(&self) -> Cursor {
        Cursor { time: 0, id: self.0.id.to_string() }
    }
    fn links(&self) -> Vec<(usize, String)> {
        vec![(0, format!("/alerts/{}", self.0.id)), (4, user_href(&self.0.user))]
    }
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}

pub(crate) struct UserRow(pub UserSummary);

impl ExportRow for UserRow {
    const COLUMNS: &'static [&'static str] = &["user", "last_seen", "open_alerts"];
    fn cells(&self) -> Vec<String> {
        vec![self.0.name.clone(), utc(self.0.last_seen_ms), self.0.open_alerts.to_string()]
    }
}

impl Listed for UserRow {
    fn cursor(&self) -> Cursor {
        Cursor { time: 0, id: self.0.name.clone() }
    }
    fn links(&self) -> Vec<(usize, String)> {
        vec![(0, user_href(&self.0.name))]
    }
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}

pub(crate) struct AuditRow(pub AuditEntry);

impl ExportRow for AuditRow {
    const COLUMNS: &'static [&'static str] = &["time", "actor", "action", "detail", "source"];
    fn cells(&self) -> Vec<String> {
        let a = &self.0;
        vec![utc(a.time_ms), a.actor.clone(), a.action.clone(), a.detail.clone(), a.source.clone()]
    }
}

// ---------------------------------------------------------------- queries shared with the API

/// `?q=&cursor=&limit=&format=` of the users list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UsersParams {
    q: Option<String>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "number")]
    limit: Option<usize>,
    format: Option<Format>,
}

pub(crate) async fn users(
    State(portal): State<Portal>,
    caller: Caller,
    Query(p): Query<UsersParams>,
    default: Format,
) -> Result<Response, WebError> {
    let search = given(&p.q);
    let spec = ListSpec {
        title: "Users",
        path: if default == Format::Html { "/users".into() } else { "/api/v1/users".into() },
        pairs: vec![("q", search.clone().unwrap_or_default())],
        filters: vec![Filter {
            name: "q",
            label: "Search",
            value: search.clone().unwrap_or_default(),
            options: vec![],
        }],
        format: p.format.unwrap_or(default),
        cursor: cursor_of(&p.cursor)?,
        limit: limit_of(p.limit)?,
    };
    list(&portal, &caller, spec, move |s: &mut dyn Store, cursor: Option<Cursor>, limit| {
        let q = UserQuery { search: search.clone(), after: cursor.map(|c| c.id), limit: Some(limit) };
        Ok(s.users(&q)?.into_iter().map(UserRow).collect())
    })
    .await
}

/// Filters of authentication events (the auth log and a user's timeline).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AuthParams {
    user: Option<String>,
    result: Option<String>,
    nas: Option<String>,
    method: Option<String>,
    country: Option<String>,
    city: Option<String>,
    /// Events of the last this many days (1 to 180; default 180).
    #[serde(default, deserialize_with = "number")]
    days: Option<u32>,
    /// Observed locations over this many days (30, 90 or 180).
    #[serde(default, deserialize_with = "number")]
    observed: Option<u32>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "number")]
    limit: Option<usize>,
    format: Option<Format>,
}

impl AuthParams {
    pub(crate) fn set_user(&mut self, name: String) {
        self.user = Some(portcullis_accounting::canonical_user(&name));
    }

    fn days(&self) -> Result<i64, WebError> {
        match self.days {
            None => Ok(180),
            Some(d @ 1..=180) => Ok(i64::from(d)),
            Some(_) => Err(WebError::BadRequest("days must be 1 to 180".into())),
        }
    }

    fn pairs(&self, with_user: bool) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("result", given(&self.result).unwrap_or_default()),
            ("nas", given(&self.nas).unwrap_or_default()),
            ("method", given(&self.method).unwrap_or_default()),
            ("country", given(&self.country).unwrap_or_default()),
            ("city", given(&self.city).unwrap_or_default()),
            ("days", self.days.map(|d| d.to_string()).unwrap_or_default()),
        ];
        if with_user {
            out.insert(0, ("user", given(&self.user).unwrap_or_default()));
        }
        out
    }

    /// The store query for `user` (or every user).
    fn query(&self, user: Option<String>) -> Result<AuthQuery, WebError> {
        Ok(AuthQuery {
            user,
            decision: given(&self.result),
            nas: given(&self.nas),
            method: given(&self.method),
            country: given(&self.country).map(|c| c.to_uppercase()),
            city: given(&self.city),
            since_ms: Some(now_ms() - self.days()? * DAY_MS),
            ..AuthQuery::default()
        })
    }
}

fn auth_fetch(base: AuthQuery) -> impl Fetch<AuthRow> {
    move |s: &mut dyn Store, cursor: Option<Cursor>, limit| {
        let before = cursor.and_then(|c| c.id.parse().ok().map(|id| (c.time, id)));
        let q = AuthQuery { before, limit: Some(limit), ..base.clone() };
        Ok(s.auth_page(&q)?.into_iter().map(|(id, e)| AuthRow(id, e)).collect())
    }
}

fn facet_filters(p: &AuthParams, facets: Option<AuthFacets>) -> Vec<Filter> {
    let f = facets.unwrap_or_default();
    let choice = |name, label, value: &Option<String>, options: Vec<String>| Filter {
        name,
        label,
        value: given(value).unwrap_or_default(),
        options: if options.is_empty() { Vec::new() } else { std::iter::once(String::new()).chain(options).collect() },
    };
    vec![
        choice("result", "Result", &p.result, f.decisions),
        choice("country", "Country", &p.country, f.countries),
        choice("nas", "NAS", &p.nas, f.nas),
        choice("method", "Method", &p.method, f.methods),
        Filter { name: "city", label: "City", value: opt(&given(&p.city)), options: vec![] },
        Filter {
            name: "days",
            label: "Days",
            value: p.days.map(|d| d.to_string()).unwrap_or_default(),
            options: vec![],
        },
    ]
}

pub(crate) async fn auth_log(
    State(portal): State<Portal>,
    caller: Caller,
    Query(p): Query<AuthParams>,
    default: Format,
) -> Result<Response, WebError> {
    let base = p.query(given(&p.user))?;
    let mut filters = facet_filters(&p, None);
    filters.insert(0, Filter { name: "user", label: "User", value: opt(&given(&p.user)), options: vec![] });
    let spec = ListSpec {
        title: "Authentication log",
        path: if default == Format::Html { "/auth-log".into() } else { "/api/v1/auth-log".into() },
        pairs: p.pairs(true),
        filters,
        format: p.format.unwrap_or(default),
        cursor: cursor_of(&p.cursor)?,
        limit: limit_of(p.limit)?,
    };
    list(&portal, &caller, spec, auth_fetch(base)).await
}

/// `?user=&open=&cursor=&limit=&format=` of the sessions list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SessionsParams {
    user: Option<String>,
    /// `1`: open sessions only.
    open: Option<String>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "number")]
    limit: Option<usize>,
    format: Option<Format>,
}

pub(crate) async fn sessions(
    State(portal): State<Portal>,
    caller: Caller,
    Query(p): Query<SessionsParams>,
    default: Format,
) -> Result<Response, WebError> {
    let user = given(&p.user);
    let open_only = given(&p.open).is_some_and(|v| v == "1");
    let spec = ListSpec {
        title: "Sessions",
        path: if default == Format::Html { "/sessions".into() } else { "/api/v1/sessions".into() },
        pairs: vec![("user", opt(&user)), ("open", if open_only { "1".into() } else { String::new() })],
        filters: vec![
            Filter { name: "user", label: "User", value: opt(&user), options: vec![] },
            Filter {
                name: "open",
                label: "Open only",
                value: if open_only { "1".into() } else { String::new() },
                options: vec![String::new(), "1".into()],
            },
        ],
        format: p.format.unwrap_or(default),
        cursor: cursor_of(&p.cursor)?,
        limit: limit_of(p.limit)?,
    };
    list(&portal, &caller, spec, move |s: &mut dyn Store, cursor: Option<Cursor>, limit| {
        let q = SessionQuery {
            user: user.clone(),
            canonical_only: true,
            paged: true,
            open_only,
            after: cursor.map(|c| (c.time, c.id)),
            limit: Some(limit),
            ..SessionQuery::default()
        };
        Ok(s.sessions(&q)?.into_iter().map(SessionRow).collect())
    })
    .await
}

/// `?status=&severity=&kind=&user=&cursor=&limit=&format=` of the alerts list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AlertsParams {
    status: Option<String>,
    severity: Option<String>,
    kind: Option<String>,
    user: Option<String>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "number")]
    limit: Option<usize>,
    format: Option<Format>,
}

pub(crate) async fn alerts(
    State(portal): State<Portal>,
    caller: Caller,
    Query(p): Query<AlertsParams>,
    default: Format,
) -> Result<Response, WebError> {
    let (status, severity, kind, user) = (given(&p.status), given(&p.severity), given(&p.kind), given(&p.user));
    let text = |name, label, value: &Option<String>| Filter { name, label, value: opt(value), options: vec![] };
    let mut status_filter = text("status", "Status", &status);
    status_filter.options =
        std::iter::once(String::new()).chain(portcullis_storage::ALERT_STATUSES.map(String::from)).collect();
    let spec = ListSpec {
        title: "Alerts",
        path: if default == Format::Html { "/alerts".into() } else { "/api/v1/alerts".into() },
        pairs: vec![("status", opt(&status)), ("severity", opt(&severity)), ("kind", opt(&kind)), ("user", opt(&user))],
        filters: vec![
            status_filter,
            text("severity", "Severity", &severity),
            text("kind", "Kind", &kind),
            text("user", "User", &user),
        ],
        format: p.format.unwrap_or(default),
        cursor: cursor_of(&p.cursor)?,
        limit: limit_of(p.limit)?,
    };
    list(&portal, &caller, spec, move |s: &mut dyn Store, cursor: Option<Cursor>, limit| {
        let q = AlertQuery {
            status: status.clone(),
            severity: severity.clone(),
            kind: kind.clone(),
            user: user.clone(),
            before_id: cursor.and_then(|c| c.id.parse().ok()),
            limit: Some(limit),
        };
        Ok(s.alerts(&q)?.into_iter().map(AlertRow).collect())
    })
    .await
}

// ---------------------------------------------------------------- the user entity page

/// What the entity page shows about a user, also the API's profile.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Profile {
    pub user: String,
    pub last_seen: Option<String>,
    pub open_alerts: usize,
    pub observed_days: i64,
    pub locations: Vec<ObservedLocation>,
    pub addresses: Vec<String>,
    pub devices: Vec<String>,
    pub nas: Vec<String>,
    #[serde(skip)]
    pub facets: AuthFacets,
    #[serde(skip)]
    pub alerts: Vec<Alert>,
    #[serde(skip)]
    pub sessions: Vec<Session>,
}

/// Sessions looked at for addresses, devices and NAS.
const RECENT_SESSIONS: usize = 500;

pub(crate) async fn profile(portal: &Portal, name: String, observed_days: i64) -> Result<Profile, WebError> {
    portal
        .store(move |s| {
            let now = now_ms();
            let user = portcullis_accounting::canonical_user(&name);
            let locations = s.user_locations(&user, now - observed_days * DAY_MS)?;
            let facets = s.auth_facets(&user, now - 180 * DAY_MS)?;
            let sessions = s.sessions(&SessionQuery {
                user: Some(user.clone()),
                canonical_only: true,
                limit: Some(RECENT_SESSIONS),
                ..SessionQuery::default()
            })?;
            let last_auth =
                s.auth_page(&AuthQuery { user: Some(user.clone()), limit: Some(1), ..AuthQuery::default() })?;
            let alerts =
                s.alerts(&AlertQuery { user: Some(user.clone()), limit: Some(50), ..AlertQuery::default() })?;
            let last = last_auth
                .first()
                .map(|(_, e)| e.time_ms)
                .max(sessions.first().map(|x| x.started_at.saturating_mul(1000)));
            let distinct = |f: &dyn Fn(&Session) -> Option<String>| {
                let set: std::collections::BTreeSet<String> = sessions.iter().filter_map(f).collect();
                set.into_iter().collect::<Vec<_>>()
            };
            Ok(Profile {
                last_seen: last.map(utc),
                open_alerts: alerts.iter().filter(|a| a.status == "open").count(),
                observed_days,
                locations,
                addresses: distinct(&|x| x.client_ip.clone()),
                devices: distinct(&|x| x.device.clone()),
                nas: distinct(&|x| Some(x.nas.clone())),
                facets,
                alerts,
                sessions: sessions.into_iter().take(20).collect(),
                user,
            })
        })
        .await
}

pub(crate) fn observed_of(p: &AuthParams) -> Result<i64, WebError> {
    match p.observed {
        None => Ok(30),
        Some(d @ (30 | 90 | 180)) => Ok(i64::from(d)),
        Some(_) => Err(WebError::BadRequest("observed must be 30, 90 or 180".into())),
    }
}

/// The alert kind whose evidence is drawn as a line between two places.
const IMPOSSIBLE_TRAVEL: &str = "impossible_travel";

/// The timeline of `user_href` filtered to the place `l` (its country and city).
fn place_href(user_href: &str, l: &ObservedLocation) -> String {
    let pairs =
        [("country", l.country.as_deref().unwrap_or_default()), ("city", l.city.as_deref().unwrap_or_default())];
    format!("{user_href}{}#timeline", query(&pairs))
}

struct LocationView {
    city: String,
    country: String,
    asn: String,
    first: String,
    last: String,
    count: u64,
    href: String,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    nav: Nav,
    profile: Profile,
    href: String,
    map: MapSvg,
    locations: Vec<LocationView>,
    ranges: Vec<(u32, String, bool)>,
    filters: Vec<Filter>,
    timeline: Table,
    alerts: Table,
    sessions: Table,
}

async fn user(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
    Query(p): Query<AuthParams>,
) -> Result<Response, WebError> {
    let user = portcullis_accounting::canonical_user(&name);
    let href = user_href(&user);
    let base = p.query(Some(user.clone()))?;
    let format = p.format.unwrap_or(Format::Html);
    let spec = |filters, format| -> Result<ListSpec, WebError> {
        Ok(ListSpec {
            title: "Timeline",
            path: href.clone(),
            pairs: p.pairs(false),
            filters,
            format,
            cursor: cursor_of(&p.cursor)?,
            limit: limit_of(p.limit)?,
        })
    };
    if format != Format::Html {
        return list(&portal, &caller, spec(Vec::new(), format)?, auth_fetch(base)).await;
    }
    let observed = observed_of(&p)?;
    let profile = profile(&portal, user.clone(), observed).await?;
    let spec = spec(Vec::new(), Format::Html)?;
    let (cursor, limit) = (spec.cursor.clone(), spec.limit);
    let fetch = auth_fetch(base);
    let rows = portal.store(move |s| fetch(s, cursor, limit)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.cursor().encode())).flatten();
    let pairs: Vec<(&str, &str)> = spec.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let timeline = table(&href, &pairs, rows, next);
    let locations = profile
        .locations
        .iter()
        .map(|l| LocationView {
            city: opt(&l.city),
            country: opt(&l.country),
            asn: l.asn.map(|a| format!("AS{a} {}", opt(&l.as_org))).unwrap_or_default(),
            first: utc(l.first_ms),
            last: utc(l.last_ms),
            count: l.count,
            href: place_href(&href, l),
        })
        .collect();
    let travel: Vec<Travel> = profile
        .alerts
        .iter()
        .filter(|a| a.kind == IMPOSSIBLE_TRAVEL)
        .filter_map(|a| map::travel_of(&a.evidence))
        .collect();
    let label = format!("Where {} connected from, last {observed} days", profile.user);
    let map = map::render(&profile.locations, |l| place_href(&href, l), &travel, &label, "map");
    let ranges =
        [30u32, 90, 180].into_iter().map(|d| (d, format!("{href}?observed={d}"), i64::from(d) == observed)).collect();
    let filters = facet_filters(&p, Some(profile.facets.clone()));
    let alerts = table("/alerts", &[], profile.alerts.iter().cloned().map(AlertRow).collect(), None);
    let sessions = table("/sessions", &[], profile.sessions.iter().cloned().map(SessionRow).collect(), None);
    Ok(render(&UserPage {
        nav: Nav::of(&caller),
        href: href.clone(),
        map,
        locations,
        ranges,
        filters,
        timeline,
        alerts,
        sessions,
        profile,
    }))
}

// ---------------------------------------------------------------- dashboard, alert, status

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Nav,
    summary: Summary,
    map: MapSvg,
    accepted: u64,
    rejected: u64,
    open_alerts: u64,
}

pub(crate) async fn summary(portal: &Portal) -> Result<Summary, WebError> {
    portal.store(|s| s.summary(now_ms() - DAY_MS)).await
}

/// Connections of the day looked at for the dashboard's map, at most (of sessions and
/// of authentication events each): a busy day costs a bounded scan.
const MAP_CONNECTIONS: usize = 50_000;

async fn dashboard(State(portal): State<Portal>, caller: Caller) -> Result<Response, WebError> {
    let summary = summary(&portal).await?;
    let places = portal.store(|s| s.recent_locations(now_ms() - DAY_MS, MAP_CONNECTIONS)).await?;
    let href = |l: &ObservedLocation| {
        let pairs = [
            ("country", l.country.as_deref().unwrap_or_default()),
            ("city", l.city.as_deref().unwrap_or_default()),
            ("days", "1"),
        ];
        format!("/auth-log{}", query(&pairs))
    };
    let map = map::render(&places, href, &[], "Where the connections of the last 24 hours come from", "map");
    let count = |d: &str| summary.auth_decisions.iter().filter(|(k, _)| k == d).map(|(_, n)| n).sum();
    Ok(render(&DashboardPage {
        nav: Nav::of(&caller),
        map,
        accepted: count("accept"),
        rejected: count("reject"),
        open_alerts: summary.open_alerts.iter().map(|(_, n)| n).sum(),
        summary,
    }))
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    nav: Nav,
    alert: Alert,
    evidence: Vec<(String, String)>,
    statuses: &'static [&'static str],
    classifications: &'static [&'static str],
    user_href: String,
    /// The two places of an impossible travel and the line between them.
    map: Option<MapSvg>,
}

/// Evidence as `key: value` lines for people.
fn evidence_lines(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                evidence_lines(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

async fn alert(State(portal): State<Portal>, caller: Caller, Path(id): Path<i64>) -> Result<Response, WebError> {
    let alert = portal.store(move |s| s.alert(id)).await?.ok_or(WebError::NotFound)?;
    let mut evidence = Vec::new();
    evidence_lines("", &alert.evidence, &mut evidence);
    let travel = (alert.kind == IMPOSSIBLE_TRAVEL).then(|| map::travel_of(&alert.evidence)).flatten();
    let timeline = format!("{}#timeline", user_href(&alert.user));
    let map = travel.map(|t| {
        let ends = map::travel_ends(&alert.evidence, &t);
        let label = format!("{} (alert {})", t.label, alert.id);
        map::render(&ends, |_| timeline.clone(), &[t], &label, "map small")
    });
    Ok(render(&AlertPage {
        nav: Nav::of(&caller),
        map,
        user_href: user_href(&alert.user),
        alert,
        evidence,
        statuses: &portcullis_storage::ALERT_STATUSES,
        classifications: &portcullis_storage::ALERT_CLASSIFICATIONS,
    }))
}

/// A change to an alert from the page's form or the API's PATCH body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AlertChange {
    status: Option<String>,
    classification: Option<String>,
    comment: Option<String>,
}

/// Longest comment kept, in bytes.
const MAX_COMMENT: usize = 4_000;

pub(crate) async fn change_alert(
    portal: &Portal,
    caller: &Caller,
    id: i64,
    change: AlertChange,
) -> Result<Alert, WebError> {
    caller.require(Role::Analyst)?;
    let update = AlertUpdate {
        status: given(&change.status),
        classification: given(&change.classification),
        comment: given(&change.comment),
    };
    if update.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(WebError::BadRequest(format!("a comment has at most {MAX_COMMENT} bytes")));
    }
    let detail = format!(
        "alert {id}: status={} classification={} comment={}",
        update.status.as_deref().unwrap_or("-"),
        update.classification.as_deref().unwrap_or("-"),
        if update.comment.is_some() { "added" } else { "-" }
    );
    let alert = portal.store(move |s| s.update_alert(id, &update, now_ms())).await?.ok_or(WebError::NotFound)?;
    portal.audit(&caller.name, "alert-update", detail, &caller.source).await;
    Ok(alert)
}

async fn update_alert(
    State(portal): State<Portal>,
    caller: Caller,
    Path(id): Path<i64>,
    Form(change): Form<AlertChange>,
) -> Result<Response, WebError> {
    change_alert(&portal, &caller, id, change).await?;
    Ok(Redirect::to(&format!("/alerts/{id}")).into_response())
}

struct ClientStatus {
    name: String,
    networks: String,
    counters: Vec<(String, u64)>,
    advice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    nav: Nav,
    clients: Vec<ClientStatus>,
    unknown: Vec<(String, u64)>,
    backlog: Option<u64>,
}

/// Counters whose growth means the NAS and this server disagree on the shared secret.
const SECRET_REASONS: [&str; 2] = ["bad_authenticator", "bad_message_authenticator"];

async fn status(State(portal): State<Portal>, caller: Caller) -> Result<Response, WebError> {
    let counters = portal.store(|s| s.counters()).await?;
    let listed = clients::listing(&portal).await?;
    let view = portal.view();
    let configured = if listed.is_empty() {
        view.clients()
    } else {
        listed.iter().map(|c| (c.settings().name.clone(), c.settings().address.to_string())).collect()
    };
    let mut clients: Vec<ClientStatus> = configured
        .into_iter()
        .map(|(name, networks)| ClientStatus { name, networks, counters: Vec::new(), advice: None })
        .collect();
    let mut unknown = Vec::new();
    for c in counters.into_iter().filter(|c| c.count > 0) {
        if let Some(ip) = c.client.strip_prefix("unknown:") {
            unknown.push((ip.to_string(), c.count));
            continue;
        }
        let index = match clients.iter().position(|x| x.name == c.client) {
            Some(i) => i,
            None => {
                clients.push(ClientStatus {
                    name: c.client.clone(),
                    networks: String::new(),
                    counters: Vec::new(),
                    advice: None,
                });
                clients.len() - 1
            }
        };
        let entry = &mut clients[index];
        if SECRET_REASONS.contains(&c.reason.as_str()) {
            entry.advice = Some("packets fail verification: check the shared secret on the NAS and here");
        }
        entry.counters.push((c.reason, c.count));
    }
    Ok(render(&StatusPage { nav: Nav::of(&caller), clients, unknown, backlog: view.journal_backlog_bytes() }))
}

// ---------------------------------------------------------------- settings, audit

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    nav: Nav,
    outcome: Outcome,
    clients: Vec<ClientView>,
    vendors: Vec<&'static str>,
    accounts: Vec<(String, &'static str, bool, String)>,
    tokens: Vec<(String, String, &'static str, String, String, String)>,
}

/// What a change made from the settings page did: notices, or why it did nothing.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub notice: Vec<String>,
    pub error: Option<String>,
}

async fn settings(State(portal): State<Portal>, caller: Caller) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    settings_page(&portal, &caller, Outcome::default()).await
}

/// The settings page (admin), with the outcome of a change just made.
pub(crate) async fn settings_page(portal: &Portal, caller: &Caller, outcome: Outcome) -> Result<Response, WebError> {
    let (accounts, tokens) = portal.accounts(|db| Ok((db.accounts()?, db.tokens()?))).await?;
    let clients = clients::listing(portal).await?.iter().map(ClientView::of).collect();
    let never = || "never".to_string();
    Ok(render(&SettingsPage {
        nav: Nav::of(caller),
        outcome,
        clients,
        vendors: clients::vendors(),
        accounts: accounts.into_iter().map(|a| (a.name, a.role.as_str(), a.disabled, utc(a.created_ms))).collect(),
        tokens: tokens
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    t.prefix,
                    t.role.as_str(),
                    utc(t.created_ms),
                    t.expires_ms.map(utc).unwrap_or_else(never),
                    t.last_used_ms.map(utc).unwrap_or_else(never),
                )
            })
            .collect(),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct AuditParams {
    cursor: Option<String>,
    #[serde(default, deserialize_with = "number")]
    limit: Option<usize>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    table: Table,
}

async fn audit(
    State(portal): State<Portal>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let before = cursor_of(&p.cursor)?.and_then(|c| c.id.parse().ok());
    let limit = limit_of(p.limit)?;
    let entries = portal.accounts(move |db| db.audit_entries(before, limit)).await?;
    let next =
        (entries.len() == limit).then(|| entries.last().map(|e| Cursor { time: 0, id: e.id.to_string() }.encode()));
    let rows = entries
        .into_iter()
        .map(|e| AuditRow(e).cells().into_iter().map(|text| Cell { text, href: None }).collect())
        .collect();
    let table = Table {
        columns: AuditRow::COLUMNS,
        rows,
        next: next.flatten().map(|c| format!("/audit?cursor={}", encode(&c))),
        csv: String::new(),
        ndjson: String::new(),
    };
    Ok(render(&AuditPage { nav: Nav::of(&caller), table }))
}

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<&'static str>,
    /// The password was right; the account's TOTP code is asked for.
    code: bool,
}

async fn login_form() -> Response {
    render(&LoginPage { error: None, code: false })
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

/// Longest portal account name.
const MAX_NAME: usize = 128;
/// The only thing a failed sign-in says.
const SIGN_IN_FAILED: &str = "Sign-in failed: wrong name or password, or the account cannot sign in.";
const CODE_FAILED: &str = "Sign-in failed: wrong or already used code.";
const SIGN_IN_LIMITED: &str = "Too many failed sign-ins: wait 15 minutes and try again.";

fn login_error(status: StatusCode, error: &'static str) -> Response {
    (status, render(&LoginPage { error: Some(error), code: false })).into_response()
}

/// How long the code may take after the password, in milliseconds.
const PENDING_MS: i64 = 5 * 60 * 1000;

/// The failure-count keys of a sign-in: the account and the source address.
fn failure_keys(name: &str, source: &str) -> [String; 2] {
    [format!("account:{name}"), format!("source:{source}")]
}

/// The larger of the two failure counts within the window; `None`: the database failed.
async fn failures(portal: &Portal, keys: &[String; 2], now: i64) -> Option<u64> {
    let k = keys.clone();
    let since = now - auth::FAILURE_WINDOW_MS;
    portal.accounts(move |db| Ok(db.failures(&k[0], since)?.max(db.failures(&k[1], since)?))).await.ok()
}

async fn record_failure(portal: &Portal, keys: [String; 2], now: i64) {
    let since = now - auth::FAILURE_WINDOW_MS;
    let _ = portal
        .accounts(move |db| {
            db.record_failure(&keys[0], now, since)?;
            db.record_failure(&keys[1], now, since)
        })
        .await;
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the portal database is unavailable\n").into_response()
}

/// A cookie of this portal: `HttpOnly; SameSite=Strict; Path=/`, and `Secure` over TLS.
fn set_cookie(portal: &Portal, response: &mut Response, name: &str, value: &str, max_age_s: i64) {
    let secure = if portal.tls() { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Starts a login session for `account` (a new id; the session the browser held
/// before ends) and answers with its cookie.
async fn start_session(portal: &Portal, parts: &axum::http::request::Parts, account: String, source: &str) -> Response {
    let old = auth::cookie(parts, portal.cookie_name()).map(auth::digest);
    let id = auth::random_secret();
    let hash = auth::digest(&id);
    let who = account.clone();
    let now = now_ms();
    let created = portal
        .accounts(move |db| {
            if let Some(old) = old {
                db.end_session(&old)?;
            }
            db.create_session(&hash, &who, now)
        })
        .await;
    if created.is_err() {
        return unavailable();
    }
    portal.audit(&account, "sign-in", String::new(), source).await;
    let mut response = Redirect::to("/").into_response();
    set_cookie(portal, &mut response, portal.cookie_name(), &id, auth::ABSOLUTE_MS / 1000);
    set_cookie(portal, &mut response, portal.pending_cookie_name(), "", 0);
    response
}

/// One sign-in is checked at a time, from the failure count to recording its failure:
/// parallel attempts cannot all pass the count before any is recorded, and password
/// hashing (19 MiB each) cannot pile up beside the RADIUS path's.
static SIGN_IN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

async fn login(
    State(portal): State<Portal>,
    parts: axum::http::request::Parts,
    Form(c): Form<Credentials>,
) -> Response {
    let Ok(_one_at_a_time) = SIGN_IN.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "sign-in is unavailable\n").into_response();
    };
    let source = auth::source(&parts);
    let now = now_ms();
    let name: String = c.name.trim().chars().take(MAX_NAME).collect();
    let keys = failure_keys(&name, &source);
    let Some(failures) = failures(&portal, &keys, now).await else {
        return unavailable();
    };
    if failures >= auth::MAX_FAILURES {
        portal.audit(&name, "sign-in-limited", String::new(), &source).await;
        return login_error(StatusCode::TOO_MANY_REQUESTS, SIGN_IN_LIMITED);
    }
    let lookup = name.clone();
    let credentials = portal.accounts(move |db| db.credentials(&lookup)).await.ok().flatten();
    let password = c.password;
    let (account, ok) = tokio::task::spawn_blocking(move || {
        let hash = credentials.as_ref().map(|(_, h)| h.as_str());
        let ok = auth::verify_password(&password, hash);
        (credentials.map(|(a, _)| a), ok)
    })
    .await
    .unwrap_or((None, false));
    let Some(account) = account.filter(|a| ok && !a.disabled) else {
        record_failure(&portal, keys, now).await;
        portal.audit(&name, "sign-in-failed", String::new(), &source).await;
        return login_error(StatusCode::UNAUTHORIZED, SIGN_IN_FAILED);
    };
    let lookup = account.name.clone();
    let Ok(totp) = portal.accounts(move |db| db.totp(&lookup)).await else {
        return unavailable();
    };
    if totp.is_none() {
        return start_session(&portal, &parts, account.name, &source).await;
    }
    // The password was right; the code decides. Nothing says so to a wrong password.
    let id = auth::random_secret();
    let hash = auth::digest(&id);
    let who = account.name.clone();
    if portal.accounts(move |db| db.create_pending(&hash, &who, now)).await.is_err() {
        return unavailable();
    }
    let mut response = render(&LoginPage { error: None, code: true });
    set_cookie(&portal, &mut response, portal.pending_cookie_name(), &id, PENDING_MS / 1000);
    response
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

/// The second step of a sign-in with TOTP: the code of the account whose password the
/// pending cookie proved. Wrong codes count as failed sign-ins (the same limit of 5 in
/// 15 minutes per account and per source); a code is accepted once.
async fn login_code(State(portal): State<Portal>, parts: axum::http::request::Parts, Form(c): Form<Code>) -> Response {
    let Ok(_one_at_a_time) = SIGN_IN.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "sign-in is unavailable\n").into_response();
    };
    let source = auth::source(&parts);
    let now = now_ms();
    let Some(pending) = auth::cookie(&parts, portal.pending_cookie_name()).filter(|v| v.len() == 64).map(auth::digest)
    else {
        return login_error(StatusCode::UNAUTHORIZED, SIGN_IN_FAILED);
    };
    let Ok(account) = portal.accounts(move |db| db.pending(&pending, now, PENDING_MS)).await else {
        return unavailable();
    };
    let Some(name) = account else {
        return login_error(StatusCode::UNAUTHORIZED, SIGN_IN_FAILED);
    };
    let keys = failure_keys(&name, &source);
    let Some(failures) = failures(&portal, &keys, now).await else {
        return unavailable();
    };
    if failures >= auth::MAX_FAILURES {
        let _ = portal.accounts(move |db| db.end_pending(&pending)).await;
        portal.audit(&name, "sign-in-limited", String::new(), &source).await;
        return login_error(StatusCode::TOO_MANY_REQUESTS, SIGN_IN_LIMITED);
    }
    let (lookup, code) = (name.clone(), c.code);
    let unix = u64::try_from(now / 1000).unwrap_or(0);
    let spent = portal
        .accounts(move |db| {
            let Some((secret, last)) = db.totp(&lookup)? else {
                return Ok(false);
            };
            match portcullis_auth::mfa::Totp::default().verify(&secret, &code, unix, last) {
                Ok(step) => db.use_totp_step(&lookup, step),
                Err(_) => Ok(false),
            }
        })
        .await;
    match spent {
        Err(_) => unavailable(),
        Ok(true) => {
            let _ = portal.accounts(move |db| db.end_pending(&pending)).await;
            start_session(&portal, &parts, name, &source).await
        }
        Ok(false) => {
            record_failure(&portal, keys, now).await;
            portal.audit(&name, "sign-in-code-failed", String::new(), &source).await;
            (StatusCode::UNAUTHORIZED, render(&LoginPage { error: Some(CODE_FAILED), code: true })).into_response()
        }
    }
}

async fn logout(State(portal): State<Portal>, caller: Caller) -> Response {
    if let Some(hash) = caller.session {
        let _ = portal.accounts(move |db| db.end_session(&hash)).await;
        portal.audit(&caller.name, "sign-out", String::new(), &caller.source).await;
    }
    let mut response = Redirect::to("/login").into_response();
    set_cookie(&portal, &mut response, portal.cookie_name(), "", 0);
    response
}
