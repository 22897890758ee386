//! The API in process — both portals' routers on one engine and one store, with a user of
//! each role — and a request builder: `api.get(path).by(&login).send().await`,
//! `api.post(path).json(&body).on(Portal::Mgmt).by(&admin).send().await`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use iobp_engine::{Engine, EngineOptions};
use iobp_store::{Role, Store};
use iobp_testkit::ports;
use iobp_web::{LogBuffer, Portal, WebShared, router};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The password of every user [`setup`] creates.
pub const PASSWORD: &str = "correct horse battery";

/// Both portals of one instance, in process.
pub struct Api {
    pub ops: Router,
    pub mgmt: Router,
    pub web: Arc<WebShared>,
    _dir: tempfile::TempDir,
}

/// A portal session: its cookie and CSRF token.
#[derive(Clone, Debug)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

/// An answer: the body as JSON (a JSON string if it is not JSON), the session cookie set.
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub cookie: Option<String>,
    pub headers: HeaderMap,
}

/// An instance with `ada` (admin), `otto` (operator), `vic` (viewer) and `rita` (relay), all
/// with [`PASSWORD`].
pub async fn setup() -> Api {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let (engine, _) = Engine::start(
        EngineOptions {
            data_dir: dir.path().to_path_buf(),
            settings: iobp_config::Settings::default(),
            repository: store.clone(),
            log_fs: None,
        },
        Vec::new(),
    )
    .await;
    let web = WebShared::new(engine, store.clone(), dir.path().to_path_buf(), LogBuffer::default());
    for (name, role) in [
        ("ada", Role::Admin),
        ("otto", Role::Operator),
        ("vic", Role::Viewer),
        ("rita", Role::Relay),
    ] {
        let hash = web.passwords.hash(PASSWORD).await.expect("hash");
        store.create_user(name, &hash, role, false).expect("user");
    }
    web.set_ready(true);
    Api {
        ops: router(web.clone(), Portal::Ops, false),
        mgmt: router(web.clone(), Portal::Mgmt, false),
        web,
        _dir: dir,
    }
}

/// A request being built: on the Operations Portal, without a session, without a body until
/// told otherwise.
#[must_use = "a request does nothing until sent"]
pub struct Call<'a> {
    api: &'a Api,
    portal: Portal,
    method: Method,
    path: String,
    body: Vec<u8>,
    login: Option<&'a Login>,
    headers: Vec<(String, String)>,
}

impl<'a> Call<'a> {
    /// To this portal's router.
    pub fn on(mut self, portal: Portal) -> Call<'a> {
        self.portal = portal;
        self
    }

    /// With this session's cookie and CSRF token (none for `None`).
    pub fn by(mut self, login: impl Into<Option<&'a Login>>) -> Call<'a> {
        self.login = login.into();
        self
    }

    /// With `body` as the JSON body.
    pub fn json(mut self, body: &Value) -> Call<'a> {
        self.body = body.to_string().into_bytes();
        self
    }

    /// With any bytes as the body (not JSON, not UTF-8, too large).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Call<'a> {
        self.body = body.into();
        self
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Call<'a> {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// With more headers.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Call<'a> {
        self.headers.extend(headers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        self
    }

    /// Sends it, from 10.1.2.3, to `portal.test:8080`.
    pub async fn send(self) -> Resp {
        let mut req = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(header::HOST, "portal.test:8080");
        if let Some(l) = self.login {
            req =
                req.header(header::COOKIE, l.cookie.clone()).header("x-csrf-token", l.csrf.clone());
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut req = req.body(Body::from(self.body)).expect("request");
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 1, 2, 3], 5555))));
        let app = match self.portal {
            Portal::Ops => self.api.ops.clone(),
            Portal::Mgmt => self.api.mgmt.clone(),
        };
        let r = app.oneshot(req).await.expect("response");
        let status = r.status();
        let headers = r.headers().clone();
        let cookie = headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Resp { status, body, cookie, headers }
    }
}

impl Api {
    /// A request with `method` to `path`.
    pub fn request(&self, method: Method, path: impl Into<String>) -> Call<'_> {
        Call {
            api: self,
            portal: Portal::Ops,
            method,
            path: path.into(),
            body: Vec::new(),
            login: None,
            headers: Vec::new(),
        }
    }

    pub fn get(&self, path: impl Into<String>) -> Call<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: impl Into<String>) -> Call<'_> {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: impl Into<String>) -> Call<'_> {
        self.request(Method::PUT, path)
    }

    pub fn delete(&self, path: impl Into<String>) -> Call<'_> {
        self.request(Method::DELETE, path)
    }

    /// Logs `user` in on `portal` with [`PASSWORD`].
    pub async fn login(&self, portal: Portal, user: &str) -> Login {
        let r = self
            .post("/api/v1/session")
            .on(portal)
            .json(&json!({"username": user, "password": PASSWORD}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        Login {
            cookie: r.cookie.expect("cookie"),
            csrf: r.body["csrf_token"].as_str().expect("csrf").into(),
        }
    }

    /// `PUT /api/v1/users/{user}` on the Management Dashboard as `admin`.
    pub async fn put_user(&self, admin: &Login, user: &str, body: Value) -> Resp {
        self.put(format!("/api/v1/users/{user}"))
            .on(Portal::Mgmt)
            .json(&body)
            .by(admin)
            .send()
            .await
    }

    /// A fresh pair for `role_name` (so deletes and edits have something to act on) and a
    /// session of that user on the Operations Portal (none for `None`).
    pub async fn pair_and_session(
        &self,
        admin: &Login,
        role_name: &str,
        role: Option<Role>,
    ) -> (String, Option<Login>) {
        let pair = format!("p-{role_name}");
        let r =
            self.post("/api/v1/pairs").json(&pair_json(&pair, ports::tcp())).by(admin).send().await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let login = match role {
            Some(Role::Relay) => Some(self.stored_session(Portal::Ops, role_name, Role::Relay)),
            Some(_) => Some(self.login(Portal::Ops, role_name).await),
            None => None,
        };
        (pair, login)
    }

    /// A portal session made directly in the store, as a relay user could hold one from a
    /// build that let relay accounts log into the portals: the routes must refuse it anyway.
    pub fn stored_session(&self, portal: Portal, user: &str, role: Role) -> Login {
        let (token, session) =
            self.web.sessions.create(&self.web.store, user, role, false, portal).expect("session");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "portal.test:8080".parse().expect("host"));
        Login {
            cookie: format!("{}={token}", portal.cookie_name_for(&headers)),
            csrf: session.csrf_token,
        }
    }
}

/// A users-API body setting these (channel, direction) relay grants.
pub fn grants_body(list: &[(&str, &str)]) -> Value {
    let grants: Vec<Value> =
        list.iter().map(|(c, d)| json!({"channel_id": c, "direction": d})).collect();
    json!({ "relay_grants": grants })
}

/// A line pair `id` listening on `port`, its destination nowhere in particular.
pub fn pair_json(id: &str, port: u16) -> Value {
    json!({
        "id": id,
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": port, "framing": {"type": "line"}},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9, "framing": {"type": "line"}}
    })
}

/// One row of [`routes`]: method, path, body, and the least role that may use it (`None`: no
/// login needed).
pub type Route = (Method, String, Option<String>, Option<Role>);

/// Every API route, with the least role that may use it.
pub fn routes(existing_pair: &str, new_pair_body: &str) -> Vec<Route> {
    let p = existing_pair;
    vec![
        (Method::GET, "/api/v1/session".into(), None, Some(Role::Viewer)),
        (
            Method::POST,
            "/api/v1/session/password".into(),
            Some(json!({"current_password": "x", "new_password": "y"}).to_string()),
            Some(Role::Viewer),
        ),
        (Method::GET, "/api/v1/pairs".into(), None, Some(Role::Viewer)),
        (Method::POST, "/api/v1/pairs".into(), Some(new_pair_body.into()), Some(Role::Operator)),
        (Method::GET, format!("/api/v1/pairs/{p}"), None, Some(Role::Viewer)),
        (
            Method::PUT,
            format!("/api/v1/pairs/{p}"),
            Some(pair_json(p, ports::tcp()).to_string()),
            Some(Role::Operator),
        ),
        (Method::POST, format!("/api/v1/pairs/{p}/stop"), None, Some(Role::Operator)),
        (Method::POST, format!("/api/v1/pairs/{p}/start"), None, Some(Role::Operator)),
        (Method::GET, format!("/api/v1/pairs/{p}/live?side=destination"), None, Some(Role::Viewer)),
        (Method::GET, format!("/api/v1/pairs/{p}/rejections"), None, Some(Role::Viewer)),
        (Method::GET, format!("/api/v1/pairs/{p}/reconciliation"), None, Some(Role::Viewer)),
        (Method::GET, format!("/api/v1/pairs/{p}/messages?state=all"), None, Some(Role::Viewer)),
        (Method::GET, format!("/api/v1/pairs/{p}/messages/1"), None, Some(Role::Viewer)),
        (Method::GET, format!("/api/v1/pairs/{p}/messages/1/trace"), None, Some(Role::Viewer)),
        (Method::POST, format!("/api/v1/pairs/{p}/messages/1/resend"), None, Some(Role::Operator)),
        (Method::GET, format!("/api/v1/pairs/{p}/parked"), None, Some(Role::Viewer)),
        (Method::POST, format!("/api/v1/pairs/{p}/parked/1/resend"), None, Some(Role::Operator)),
        (Method::POST, format!("/api/v1/pairs/{p}/parked/1/discard"), None, Some(Role::Operator)),
        (
            Method::POST,
            format!("/api/v1/pairs/{p}/replay"),
            Some(json!({"dry_run": true}).to_string()),
            Some(Role::Operator),
        ),
        (Method::GET, "/api/v1/settings".into(), None, Some(Role::Viewer)),
        (
            Method::PUT,
            "/api/v1/settings".into(),
            Some(json!({"retention_hours": 12}).to_string()),
            Some(Role::Admin),
        ),
        (Method::GET, "/api/v1/users".into(), None, Some(Role::Admin)),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(
                json!({"username": "newbie", "password": "long enough pw", "role": "viewer"})
                    .to_string(),
            ),
            Some(Role::Admin),
        ),
        (
            Method::PUT,
            "/api/v1/users/newbie".into(),
            Some(json!({"role": "operator"}).to_string()),
            Some(Role::Admin),
        ),
        (Method::DELETE, "/api/v1/users/newbie".into(), None, Some(Role::Admin)),
        (Method::GET, "/api/v1/health".into(), None, Some(Role::Viewer)),
        (Method::GET, "/api/v1/logs?level=warn".into(), None, Some(Role::Viewer)),
        (Method::GET, "/api/v1/audit?limit=5".into(), None, Some(Role::Admin)),
        (Method::GET, "/api/v1/serial-ports".into(), None, Some(Role::Viewer)),
        (Method::DELETE, format!("/api/v1/pairs/{p}?confirm={p}"), None, Some(Role::Operator)),
        (Method::DELETE, "/api/v1/session".into(), None, Some(Role::Viewer)),
    ]
}

/// The OpenAPI path template of a path of [`routes`]`("{id}", …)`: without the query, the
/// message number and user name as parameters.
pub fn template_of(path: &str) -> String {
    path.split('?')
        .next()
        .unwrap_or_default()
        .replace("/parked/1", "/parked/{parked}")
        .replace("/1", "/{seq}")
        .replace("newbie", "{username}")
}
