//! Black-box tests of the gateway on a real listener (port 0), over the
//! in-memory adapters: REST with a minimal HTTP/1.1 client, and Socket.IO over
//! raw Engine.IO long-polling packets.

// Test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use afritalk_adapter_memory::{
    LocalEventBus, LocalPresence, LocalRateLimiter, MemoryStore, SystemClock, UuidV7Ids,
};
use afritalk_auth::{Identity, RootKeyPair, TokenMinter, TokenVerifier};
use afritalk_core::{ActorKind, MessagingService, Ports};
use afritalk_http::{AlwaysReady, App, HttpConfig, Tls, TlsFiles, serve};
use afritalk_ports::{
    ConnectionId, Directory, DirectoryUser, DisplayName, PresenceChange, PresenceRecord,
    PresenceTracker, RateAction, RateLimit, RateLimits, Role, StoreResult, TenantId, UserId,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct TestServer {
    addr: SocketAddr,
    app: App,
    /// The store the server runs on (every port but presence, events and rates).
    store: MemoryStore,
    minter: TokenMinter,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn spawn_with(config: HttpConfig, limits: RateLimits) -> TestServer {
    spawn_over(config, limits, Arc::new(LocalPresence::new())).await
}

async fn spawn_over(
    config: HttpConfig,
    limits: RateLimits,
    presence: Arc<dyn PresenceTracker>,
) -> TestServer {
    spawn_serving(config, limits, presence, None).await
}

/// The server over TLS with a fresh self-signed certificate.
async fn spawn_tls(config: HttpConfig) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("chain.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, pair.cert.pem()).unwrap();
    std::fs::write(&files.key, pair.signing_key.serialize_pem()).unwrap();
    let tls = Tls::load(files).unwrap();
    let presence = Arc::new(LocalPresence::new());
    let server = spawn_serving(config, RateLimits::default(), presence, Some(tls)).await;
    (server, dir)
}

async fn spawn_serving(
    config: HttpConfig,
    limits: RateLimits,
    presence: Arc<dyn PresenceTracker>,
    tls: Option<Tls>,
) -> TestServer {
    let store = MemoryStore::new();
    let clock = Arc::new(SystemClock::new());
    let bus = Arc::new(LocalEventBus::new());
    let service = MessagingService::new(Ports {
        messages: Arc::new(store.clone()),
        notifications: Arc::new(store.clone()),
        audit: Arc::new(store.clone()),
        directory: Arc::new(store.clone()),
        presence,
        events: bus.clone(),
        rate_limiter: Arc::new(LocalRateLimiter::new(clock.clone(), limits)),
        features: Arc::new(store.clone()),
        clock,
        ids: Arc::new(UuidV7Ids::new()),
    });
    let minter = TokenMinter::new(RootKeyPair::generate());
    let verifier = TokenVerifier::new(minter.root().public());
    let app = App::new(service, verifier, config, Arc::new(AlwaysReady));
    bus.attach(app.event_sink());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, tls, app.clone(), async {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        app,
        store,
        minter,
        stop: Some(stop),
        task,
    }
}

/// The server with its token sweep every 200 ms instead of 15 s.
async fn spawn_sweeping_often() -> TestServer {
    spawn_with(
        HttpConfig {
            token_recheck_interval: Duration::from_millis(200),
            ..HttpConfig::default()
        },
        RateLimits::default(),
    )
    .await
}

async fn spawn() -> TestServer {
    spawn_with(HttpConfig::default(), RateLimits::default()).await
}

impl TestServer {
    fn token_for(&self, tenant: &str, user: &str, kind: ActorKind) -> String {
        let identity = Identity {
            tenant: TenantId::parse(tenant).unwrap(),
            user: UserId::parse(user).unwrap(),
            kind,
            name: Some(DisplayName::parse(format!("Name of {user}")).unwrap()),
        };
        self.minter
            .mint(&identity, Duration::from_secs(600))
            .unwrap()
    }

    fn token(&self, user: &str, role: Role) -> String {
        self.token_for("t1", user, ActorKind::Staff(role))
    }

    /// `POST …/messaging/message` from `token` to `to` in tenant t1.
    async fn send(&self, token: &str, to: &str, content: &str) -> Response {
        let path = "/api/tenants/t1/messaging/message";
        self.call("POST", path, Some(token), Some(&send_body(to, content)))
            .await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        self.raw(method, path, token, body, &[]).await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// Registers a directory user through the API, as the PDG.
    async fn add_user(&self, user: &str, role: &str) {
        let pdg = self.token("boss", Role::Pdg);
        let body = json!({ "displayName": format!("Name of {user}"), "role": role }).to_string();
        let r = self
            .call(
                "PUT",
                &format!("/api/tenants/t1/directory/users/{user}"),
                Some(&pdg),
                Some(&body),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn send_body(to: &str, content: &str) -> String {
    json!({ "toUserId": to, "content": content }).to_string()
}

#[tokio::test]
async fn a_message_is_sent_listed_and_read() {
    let server = spawn().await;
    server.add_user("emp", "EMPLOYE").await;
    let dg = server.token("dg1", Role::Dg);
    let emp = server.token("emp", Role::Employe);

    let sent = server
        .call(
            "POST",
            "/api/tenants/t1/messaging/message",
            Some(&dg),
            Some(
                &json!({ "toUserId": "emp", "content": " Habari ", "relatedEntityType": "order",
                "relatedEntityId": "O-1", "clientMessageId": "c-1" })
                .to_string(),
            ),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let message = sent.json()["message"].clone();
    assert_eq!(message["content"], "Habari");
    assert_eq!(message["relatedEntityType"], "order");
    let id = message["id"].as_str().unwrap().to_owned();

    // A retry with the same clientMessageId returns the original.
    let retry = server
        .call(
            "POST",
            "/api/tenants/t1/messaging/message",
            Some(&dg),
            Some(
                &json!({ "toUserId": "emp", "content": "Habari", "clientMessageId": "c-1" })
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json()["message"]["id"], id.as_str());

    let history = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/conversation/dg1?limit=10",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.json()["messages"].as_array().unwrap().len(), 1);

    let list = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/conversations",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(list.json()["conversations"][0]["unreadCount"], 1);
    assert_eq!(
        list.json()["conversations"][0]["participant"]["userId"],
        "dg1"
    );

    let read = server
        .call(
            "PUT",
            &format!("/api/tenants/t1/messaging/{id}/read"),
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["read"], true);
    assert!(read.json()["readAt"].is_string());

    let notes = server
        .call("GET", "/api/tenants/t1/notifications", Some(&emp), None)
        .await;
    assert_eq!(notes.status, 200);
    assert_eq!(notes.json()["notifications"][0]["type"], "message");

    let sync = server
        .call("GET", "/api/tenants/t1/messaging/sync", Some(&emp), None)
        .await;
    assert_eq!(sync.status, 200, "{}", sync.body);
    assert_eq!(sync.json()["changes"].as_array().unwrap().len(), 1);
    assert_eq!(sync.json()["unreadMessages"], 0);

    let conv = message["conversationId"].as_str().unwrap();
    let after = server
        .call(
            "GET",
            &format!("/api/tenants/t1/messaging/conversations/{conv}/messages?after=0"),
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(after.json()["messages"].as_array().unwrap().len(), 1);

    let edit = server
        .call(
            "PATCH",
            &format!("/api/tenants/t1/messaging/{id}"),
            Some(&dg),
            Some(r#"{"content":"Habari yako"}"#),
        )
        .await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert!(edit.json()["editedAt"].is_string());
    let del = server
        .call(
            "DELETE",
            &format!("/api/tenants/t1/messaging/{id}"),
            Some(&dg),
            None,
        )
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(del.json()["content"], "");

    let metrics = server.call("GET", "/metrics", None, None).await;
    assert!(
        metrics.body.contains("afritalk_messages_sent_total 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains(r#"route="/api/tenants/{tenantId}/messaging/message""#)
    );
    assert!(metrics.body.contains("afritalk_socket_connections 0"));
    assert!(
        metrics
            .body
            .contains(r#"afritalk_connections_dropped_total{reason="tls_handshake_limit"} 0"#),
        "{}",
        metrics.body
    );
    // Every REST call above after the first of each token reused its check.
    let reopened = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("afritalk_tokens_reopened_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(reopened.is_some_and(|n| n >= 3), "{}", metrics.body);
    server.stop().await;
}

#[tokio::test]
async fn each_error_class_gets_its_status_and_json_body() {
    let limits =
        RateLimits::default().with(RateAction::Send, RateLimit::new(2, Duration::from_secs(60)));
    let server = spawn_with(
        HttpConfig {
            max_body_bytes: 1024,
            ..HttpConfig::default()
        },
        limits,
    )
    .await;
    server.add_user("emp", "EMPLOYE").await;
    server.add_user("boss2", "PDG").await;
    let emp = server.token("emp", Role::Employe);
    let send = "/api/tenants/t1/messaging/message";

    for (body, what) in [
        ("{not json", "malformed JSON"),
        (r#"{"toUserId":"boss2","content":5}"#, "wrong type"),
        (
            r#"{"toUserId":"boss2","content":"hi","colour":"red"}"#,
            "unknown field",
        ),
        (r#"{"toUserId":"boss2","content":"   "}"#, "empty content"),
    ] {
        let r = server.call("POST", send, Some(&emp), Some(body)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "validation"),
            "{what}: {}",
            r.body
        );
        assert!(r.json()["error"]["message"].is_string());
    }

    let r = server
        .call("POST", send, Some(&emp), Some(&send_body("ghost", "hi")))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = server
        .call("POST", send, Some(&emp), Some(&send_body("emp", "hi")))
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "self_message"));
    // Employé → PDG is refused by the matrix.
    let r = server
        .call("POST", send, Some(&emp), Some(&send_body("boss2", "hi")))
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    // The third counted send attempt in the window is rate limited, with a retry hint.
    let r = server
        .call("POST", send, Some(&emp), Some(&send_body("ghost", "hi")))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "rate_limited"),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    assert!(r.json()["error"]["retryAfterMs"].as_u64().is_some());

    let big = send_body("emp", &"x".repeat(2000));
    let r = server.call("POST", send, Some(&emp), Some(&big)).await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));

    let r = server
        .call("GET", "/api/tenants/t1/nothing-here", Some(&emp), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = server.call("GET", "/favicon.ico", None, None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = server
        .call("DELETE", "/api/tenants/t1/presence", Some(&emp), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    // A fixed path of another method is not a message id (400) but a 405.
    let r = server
        .call(
            "DELETE",
            "/api/tenants/t1/messaging/conversations",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));
    // HEAD answers as GET, without the body; OPTIONS says what is allowed.
    let r = server.call("HEAD", "/healthz", None, None).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let r = server
        .call("OPTIONS", "/api/tenants/t1/presence", None, None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    // Escapes that are not UTF-8 name the parameter rather than "no such route".
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/directory/users/%E9",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "validation"),
        "{}",
        r.body
    );

    let r = server
        .call(
            "PUT",
            "/api/tenants/t1/messaging/not-a-uuid/read",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "validation"));
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/conversations?limit=500",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "validation"));
    let r = server
        .call("GET", "/api/tenants/t1/messaging/audit", Some(&emp), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));

    // A service switches messaging off; staff are then refused clearly.
    let service = server.token_for("t1", "ops", ActorKind::Service);
    let r = server
        .call(
            "PUT",
            "/api/tenants/t1/settings/messaging",
            Some(&service),
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/conversations",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "messaging_disabled"));
    // Any token of the tenant may read the switch (its front end hides the chat).
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/settings/messaging",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({ "enabled": false })));
    server.stop().await;
}

#[tokio::test]
async fn refused_tokens_get_401_or_403_with_a_clear_code() {
    let server = spawn().await;
    let path = "/api/tenants/t1/messaging/conversations";
    let r = server.call("GET", path, None, None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_token"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = server.call("GET", path, Some("garbage"), None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_token"));

    let expired = server
        .minter
        .mint_until(
            &Identity {
                tenant: TenantId::parse("t1").unwrap(),
                user: UserId::parse("u1").unwrap(),
                kind: ActorKind::Staff(Role::Dg),
                name: None,
            },
            SystemTime::now() - Duration::from_secs(30),
        )
        .unwrap();
    let r = server.call("GET", path, Some(&expired), None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_expired"));

    let foreign = server.token_for("t2", "u1", ActorKind::Staff(Role::Pdg));
    let r = server.call("GET", path, Some(&foreign), None).await;
    assert_eq!((r.status, r.code().as_str()), (403, "tenant_mismatch"));

    let token = server.token("u1", Role::Dg);
    let read_only = biscuit_auth::Biscuit::from_base64(&token, |_| {
        biscuit_auth::PublicKey::from_bytes_hex(
            &server.minter.root().public().to_hex(),
            biscuit_auth::Algorithm::Ed25519,
        )
    })
    .unwrap()
    .append(biscuit_auth::macros::block!(
        r#"check if operation("read");"#
    ))
    .unwrap()
    .to_base64()
    .unwrap();
    let r = server.call("GET", path, Some(&read_only), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.send(&read_only, "u2", "hi").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "operation_not_allowed")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_user_known_only_by_a_rest_read_can_be_written_to() {
    let server = spawn().await;
    let (dg, emp) = (
        server.token("dg1", Role::Dg),
        server.token("emp1", Role::Employe),
    );
    // The employee has done nothing yet: unknown to the directory.
    assert_eq!(server.send(&dg, "emp1", "bonjour").await.status, 404);
    // One REST read with their token, and they are known by its facts.
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/conversations",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = server.send(&dg, "emp1", "bonjour").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/directory/users/emp1",
            Some(&emp),
            None,
        )
        .await;
    assert_eq!(r.json()["displayName"], "Name of emp1", "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn a_message_is_fetched_by_id_by_its_participants_only() {
    let server = spawn().await;
    for (user, role) in [("dg1", "DG"), ("emp1", "EMPLOYE"), ("emp2", "EMPLOYE")] {
        server.add_user(user, role).await;
    }
    let dg = server.token("dg1", Role::Dg);
    let sent = server.send(&dg, "emp1", "commande 17").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let id = sent.json()["message"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/tenants/t1/messaging/{id}");
    // The sender sees it not yet delivered; the recipient's fetch delivers it.
    let r = server.call("GET", &path, Some(&dg), None).await;
    assert_eq!(
        (r.status, r.json()["deliveredAt"].is_null()),
        (200, true),
        "{}",
        r.body
    );
    let emp = server.token("emp1", Role::Employe);
    let r = server.call("GET", &path, Some(&emp), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["conversationId"], sent.json()["conversationId"]);
    assert!(r.json()["deliveredAt"].is_string(), "{}", r.body);
    // Anyone else of the tenant is told it does not exist.
    let other = server.token("emp2", Role::Employe);
    let r = server.call("GET", &path, Some(&other), None).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    server.stop().await;
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else_is() {
    let server = spawn().await;
    let doc = server.call("GET", "/openapi.json", None, None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let id = "00000000-0000-0000-0000-000000000000";
    let mut count = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = template
            .replace("{tenantId}", "t1")
            .replace("{userId}", "u9")
            .replace("{messageId}", id)
            .replace("{conversationId}", id)
            .replace("{notificationId}", id);
        for method in item.as_object().unwrap().keys() {
            count += 1;
            let r = server
                .call(&method.to_ascii_uppercase(), &path, None, Some("{}"))
                .await;
            let secured = item[method].get("security").is_some();
            let expected = if secured { 401 } else { 200 };
            assert_eq!(r.status, expected, "{method} {template}: {}", r.body);
        }
    }
    assert_eq!(count, 26);
    server.stop().await;
}

#[tokio::test]
async fn the_trusted_proxy_header_gives_the_audited_client_ip() {
    let config = HttpConfig {
        client_ip_header: Some("X-Forwarded-For".into()),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    server.add_user("emp", "EMPLOYE").await;
    let dg = server.token("dg1", Role::Dg);
    let r = server
        .raw(
            "POST",
            "/api/tenants/t1/messaging/message",
            Some(&dg),
            Some(&send_body("emp", "hi")),
            // The client forged the first entry; the proxy appended the second.
            &[("X-Forwarded-For", "198.51.100.66, 203.0.113.9")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Not an address: the TCP peer is audited instead of the header's text.
    let r = server
        .raw(
            "POST",
            "/api/tenants/t1/messaging/message",
            Some(&dg),
            Some(&send_body("emp", "again")),
            &[("X-Forwarded-For", "<script>")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pdg = server.token("boss", Role::Pdg);
    let audit = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/audit?action=message.send",
            Some(&pdg),
            None,
        )
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    // Newest first.
    assert_eq!(audit.json()["entries"][0]["ipAddress"], "127.0.0.1");
    assert_eq!(audit.json()["entries"][1]["ipAddress"], "203.0.113.9");
    let health = server.call("GET", "/healthz", None, None).await;
    assert_eq!(health.json()["status"], "ok");
    let ready = server.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn socket_handshakes_check_the_origin_and_hide_the_internal_path() {
    let config = HttpConfig {
        allowed_origins: Some(vec!["https://admin.example".into()]),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    let path = "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling";
    let r = server
        .raw(
            "GET",
            path,
            None,
            None,
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "origin_not_allowed"));
    // An allowed Origin reaches the Engine.IO handshake (an open packet).
    let r = server
        .raw(
            "GET",
            path,
            None,
            None,
            &[("Origin", "https://admin.example")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"sid\""), "{}", r.body);
    let r = server
        .call(
            "GET",
            "/__afritalk/socket/?EIO=4&transport=polling",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn browsers_on_an_allowed_origin_may_call_the_api_and_others_may_not() {
    let config = HttpConfig {
        allowed_origins: Some(vec!["https://admin.example".into()]),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    let header = |r: &Response, name: &str| -> Option<String> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let preflight = |origin: &'static str, path: &'static str| {
        let server = &server;
        async move {
            server
                .raw(
                    "OPTIONS",
                    path,
                    None,
                    None,
                    &[
                        ("Origin", origin),
                        ("Access-Control-Request-Method", "POST"),
                        (
                            "Access-Control-Request-Headers",
                            "authorization, content-type",
                        ),
                    ],
                )
                .await
        }
    };
    let send_path = "/api/tenants/t1/messaging/message";

    // The preflight of a send: allowed for the admin's origin only.
    let r = preflight("https://admin.example", send_path).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://admin.example")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    assert!(
        header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let r = preflight("https://evil.example", send_path).await;
    assert_eq!((r.status, r.code().as_str()), (403, "origin_not_allowed"));
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // A socket path's preflight is answered the same way, not by Engine.IO.
    let r = preflight(
        "https://admin.example",
        "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // The calls themselves: the answer names the allowed origin, errors included.
    let token = server.token("u1", Role::Dg);
    let conversations = "/api/tenants/t1/messaging/conversations";
    let from = |origin: &'static str, path: &'static str, token: Option<&String>| {
        let (server, token) = (&server, token.cloned());
        async move {
            let token = token.as_deref();
            server
                .raw("GET", path, token, None, &[("Origin", origin)])
                .await
        }
    };
    let r = from("https://admin.example", conversations, Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://admin.example")
    );
    let vary = header(&r, "vary").unwrap().to_ascii_lowercase();
    assert!(vary.contains("origin"), "{vary}");
    let r = from("https://admin.example", conversations, None).await;
    assert_eq!(r.status, 401);
    assert!(
        header(&r, "access-control-allow-origin").is_some(),
        "a page must read its errors"
    );
    let r = from("https://evil.example", conversations, Some(&token)).await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // The operations routes are not the API: no page may read them.
    let r = from("https://admin.example", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    // Its OPTIONS answers what the path allows, naming no origin: the browser
    // refuses the page's call.
    let r = preflight("https://admin.example", "/readyz").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "access-control-allow-methods"), None);
    // Engine.IO's polling answers carry it too, for polling from the browser.
    let r = server
        .raw(
            "GET",
            "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling",
            None,
            None,
            &[("Origin", "https://admin.example")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://admin.example")
    );
    server.stop().await;
}

/// A Socket.IO client over Engine.IO v4 long-polling, speaking raw packets.
struct Polling<'a> {
    server: &'a TestServer,
    base: String,
}

impl<'a> Polling<'a> {
    /// Opens an Engine.IO session and sends the Socket.IO CONNECT with `auth`.
    async fn connect(server: &'a TestServer, tenant: &str, auth: Value) -> (Polling<'a>, String) {
        let base = format!("/api/tenants/{tenant}/messaging/socket/?EIO=4&transport=polling");
        let open = server.call("GET", &base, None, None).await;
        assert_eq!(open.status, 200, "{}", open.body);
        let handshake: Value = serde_json::from_str(open.body.trim_start_matches('0')).unwrap();
        let sid = handshake["sid"].as_str().unwrap();
        let client = Polling {
            server,
            base: format!("{base}&sid={sid}"),
        };
        client.post(&format!("40{auth}")).await;
        // The CONNECT answer (`40…` or `44…`); engine pings may come first under load.
        let mut reply = Vec::new();
        for _ in 0..10 {
            reply = client.poll().await;
            if !reply.is_empty() {
                break;
            }
        }
        (client, reply.join("\u{1e}"))
    }

    /// A connected socket of staff member `user` of `t1`.
    async fn staff(server: &'a TestServer, user: &str, role: Role) -> Polling<'a> {
        let token = server.token(user, role);
        let (client, reply) = Self::connect(server, "t1", json!({ "token": token })).await;
        assert!(reply.starts_with("40"), "{reply}");
        client
    }

    async fn post(&self, packets: &str) {
        let r = self
            .server
            .raw("POST", &self.base, None, Some(packets), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// One long-poll: the Socket.IO packets waiting (at most 20 s: generous
    /// for a loaded runner, yet short of the 25 s ping that would end an
    /// empty poll). Engine.IO pings are answered with a pong and left out, as
    /// a real client does.
    async fn poll(&self) -> Vec<String> {
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            self.server.call("GET", &self.base, None, None),
        )
        .await
        .expect("a packet within 20 s");
        let mut packets = Vec::new();
        for packet in r.body.split('\u{1e}') {
            if packet == "2" {
                self.post("3").await;
            } else if !packet.is_empty() {
                packets.push(packet.to_owned());
            }
        }
        packets
    }

    /// Polls until a packet starts with `prefix`; returns it.
    async fn wait_for(&self, prefix: &str) -> String {
        for _ in 0..10 {
            if let Some(p) = self
                .poll()
                .await
                .into_iter()
                .find(|p| p.starts_with(prefix))
            {
                return p;
            }
        }
        panic!("no packet starting with {prefix}");
    }
}

/// The JSON array of a `42…`/`43…` packet after its ack id.
fn packet_json(packet: &str) -> (Option<u64>, Value) {
    let body = &packet[2..];
    let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
    let json = serde_json::from_str(&body[digits.len()..]).unwrap();
    (digits.parse().ok(), json)
}

#[tokio::test]
async fn sockets_refuse_bad_tokens_and_foreign_tenants_at_connect() {
    let server = spawn().await;
    let (_, reply) = Polling::connect(&server, "t1", json!({})).await;
    assert!(
        reply.starts_with("44") && reply.contains("missing token") && reply.contains("auth.token"),
        "{reply}"
    );
    let (_, reply) = Polling::connect(&server, "t1", json!({ "token": "garbage" })).await;
    assert!(
        reply.starts_with("44") && reply.contains("invalid_token"),
        "{reply}"
    );
    let token = server.token("dg1", Role::Dg);
    let (_, reply) = Polling::connect(&server, "t2", json!({ "token": token })).await;
    assert!(
        reply.starts_with("44") && reply.contains("tenant_mismatch"),
        "{reply}"
    );
    // The path's tenant is percent-decoded as REST's is: `%74` is `t`.
    let (_, reply) = Polling::connect(&server, "%741", json!({ "token": token })).await;
    assert!(reply.starts_with("40"), "{reply}");
    let service = server.token_for("t1", "ops", ActorKind::Service);
    let (_, reply) = Polling::connect(&server, "t1", json!({ "token": service })).await;
    assert!(
        reply.starts_with("44") && reply.contains("forbidden"),
        "{reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_role_outside_the_matrix_is_forbidden_on_the_trail_over_rest_and_socket() {
    use afritalk_ports::{AuditAction, AuditFilter, AuditLog, PageSize};
    let server = spawn().await;
    let key = biscuit_auth::KeyPair::from(
        &biscuit_auth::PrivateKey::from_bytes_hex(
            &server.minter.root().to_hex(),
            biscuit_auth::Algorithm::Ed25519,
        )
        .unwrap(),
    );
    let token =
        biscuit_auth::macros::biscuit!(r#"tenant("t1"); user("compta"); role("COMPTABLE");"#)
            .build(&key)
            .unwrap()
            .to_base64()
            .unwrap();
    let path = "/api/tenants/t1/messaging/conversations";
    let r = server.call("GET", path, Some(&token), None).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "forbidden"),
        "{}",
        r.body
    );
    assert!(r.body.contains("COMPTABLE"), "{}", r.body);
    let (_, reply) = Polling::connect(&server, "t1", json!({ "token": token })).await;
    assert!(
        reply.starts_with("44") && reply.contains("forbidden") && reply.contains("COMPTABLE"),
        "{reply}"
    );
    // The messaging switch, which every front end asks first: refused, no row.
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/settings/messaging",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "forbidden"),
        "{}",
        r.body
    );
    // Each refusal is on the tenant's trail, naming the role and what was tried.
    let t1 = TenantId::parse("t1").unwrap();
    let filter = AuditFilter {
        action: Some(AuditAction::ForbiddenAttempt),
        ..AuditFilter::default()
    };
    let rows = server
        .store
        .query(&t1, filter, PageSize::DEFAULT)
        .await
        .unwrap();
    let tried: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.user_id.as_ref().map(UserId::as_str), Some("compta"));
            (
                r.details["role"].as_str().unwrap(),
                r.details["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        vec![
            ("COMPTABLE", "ws.connect"),
            (
                "COMPTABLE",
                "GET /api/tenants/{tenantId}/messaging/conversations"
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn presence_subscriptions_answer_current_status_and_are_capped_per_socket() {
    // Reading the statuses takes a while, as across nodes, so that calls sent
    // together overlap.
    let server = spawn_over(
        HttpConfig::default(),
        RateLimits::default(),
        SlowPresence::new(Duration::ZERO, Duration::from_millis(20)),
    )
    .await;
    let _emp = Polling::staff(&server, "emp", Role::Employe).await;
    let dg = Polling::staff(&server, "dg1", Role::Dg).await;
    let emit = async |id: u32, event: &str, users: Vec<String>| {
        let packet = json!([event, { "userIds": users }]);
        dg.post(&format!("42{id}{packet}")).await;
        packet_json(&dg.wait_for(&format!("43{id}")).await).1[0].clone()
    };
    let batch =
        |n: usize| -> Vec<String> { (0..200).map(|i| format!("u{}", n * 200 + i)).collect() };

    let ack = emit(0, "presence:subscribe", vec!["emp".into(), "ghost".into()]).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let presence = ack["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1, "only users with a presence: {ack}");
    assert_eq!(presence[0]["userId"], "emp");
    assert_eq!(presence[0]["status"], "online");

    let too_many: Vec<String> = (0..201).map(|i| format!("x{i}")).collect();
    let ack = emit(1, "presence:subscribe", too_many).await;
    assert_eq!(ack["error"]["code"], "validation", "{ack}");

    // 2 + 4 × 200 watched; 200 more would pass the 1,000 of one socket.
    for n in 0..4 {
        let ack = emit(2, "presence:subscribe", batch(n)).await;
        assert_eq!(ack["ok"], true, "{ack}");
        // Each round's ack is read before the next id 2 is sent.
    }
    let ack = emit(3, "presence:subscribe", batch(4)).await;
    assert_eq!(ack["error"]["code"], "validation", "{ack}");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("802"),
        "{ack}"
    );
    // Users already watched add nothing; unsubscribing makes room.
    let ack = emit(4, "presence:subscribe", batch(0)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = emit(5, "presence:unsubscribe", batch(0)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = emit(6, "presence:subscribe", batch(4)).await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Calls sent together (each runs in a task of its own) still respect the
    // cap: back to 2 watched, six calls of 200 in one request, four fit.
    for n in 1..5 {
        let ack = emit(7, "presence:unsubscribe", batch(n)).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let burst: Vec<String> = (5..11)
        .map(|n| {
            format!(
                "42{}{}",
                20 + n,
                json!(["presence:subscribe", { "userIds": batch(n) }])
            )
        })
        .collect();
    dg.post(&burst.join("\u{1e}")).await;
    let mut acks = Vec::new();
    for _ in 0..10 {
        acks.extend(dg.poll().await.into_iter().filter(|p| p.starts_with("43")));
        if acks.len() == 6 {
            break;
        }
    }
    let oks: Vec<bool> = acks
        .iter()
        .map(|p| packet_json(p).1[0]["ok"] == true)
        .collect();
    assert_eq!(oks.len(), 6, "{acks:?}");
    assert_eq!(oks.iter().filter(|ok| **ok).count(), 4, "{acks:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_socket_send_reaches_the_recipient_and_its_ack_gives_the_sender_delivered() {
    let server = spawn().await;
    let emp = Polling::staff(&server, "emp", Role::Employe).await;
    let dg = Polling::staff(&server, "dg1", Role::Dg).await;

    dg.post(
        r#"420["messaging:send",{"toUserId":"emp","content":"Habari","clientMessageId":"s-1"}]"#,
    )
    .await;
    let (ack_id, ack) = packet_json(&dg.wait_for("430").await);
    assert_eq!(ack_id, Some(0));
    assert_eq!(ack[0]["ok"], true, "{ack}");
    let message_id = ack[0]["message"]["id"].as_str().unwrap().to_owned();
    assert!(ack[0]["conversationId"].is_string());

    // The recipient gets messaging:new with an ack id, and acknowledges it.
    let new = emp.wait_for("42").await;
    let (ack_id, event) = packet_json(&new);
    assert_eq!(event[0], "messaging:new", "{new}");
    assert_eq!(event[1]["message"]["id"], message_id.as_str());
    let ack_id = ack_id.expect("messaging:new to the recipient asks for an ack");
    emp.post(&format!(r#"43{ack_id}[{{"received":true}}]"#))
        .await;

    // ✓✓ reaches the sender.
    let delivered = loop {
        let p = dg.wait_for("42").await;
        if p.contains("messaging:delivered") {
            break p;
        }
    };
    let (_, event) = packet_json(&delivered);
    assert_eq!(event[1]["messageId"], message_id.as_str());
    assert!(event[1]["deliveredAt"].is_string());

    // Bad payloads and unknown events get an error ack; the socket stays usable.
    dg.post(r#"421["messaging:send",{"content":5}]"#).await;
    let (_, ack) = packet_json(&dg.wait_for("431").await);
    assert_eq!(ack[0]["ok"], false);
    assert_eq!(ack[0]["error"]["code"], "validation");
    dg.post(r#"422["no:such-event",{}]"#).await;
    let (_, ack) = packet_json(&dg.wait_for("432").await);
    assert_eq!(ack[0]["error"]["code"], "unknown_event");
    dg.post(r#"423["presence:ping",{}]"#).await;
    let (_, ack) = packet_json(&dg.wait_for("433").await);
    assert_eq!(ack[0]["ok"], true, "{ack}");
    assert_eq!(ack[0]["presence"]["status"], "online");

    let metrics = server.call("GET", "/metrics", None, None).await;
    assert!(
        metrics.body.contains("afritalk_socket_connections 2"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("afritalk_delivery_latency_seconds_count 1"),
        "{}",
        metrics.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_only_listens_is_closed_when_its_token_expires() {
    let server = spawn_sweeping_often().await;
    let identity = Identity {
        tenant: TenantId::parse("t1").unwrap(),
        user: UserId::parse("emp").unwrap(),
        kind: ActorKind::Staff(Role::Employe),
        name: None,
    };
    // Expiry has whole-second precision: this token reads for 1 to 2 s.
    let short = server
        .minter
        .mint(&identity, Duration::from_secs(1))
        .unwrap();
    let (listener, reply) = Polling::connect(&server, "t1", json!({ "token": short })).await;
    assert!(reply.starts_with("40"), "{reply}");
    let keeper = Polling::staff(&server, "dg1", Role::Dg).await;

    // The listener sends nothing; the server closes it all the same.
    let closed = listener.wait_for("41").await;
    assert_eq!(closed, "41");
    // A socket whose token is still good stays.
    keeper.post(r#"420["presence:ping",{}]"#).await;
    let (_, ack) = packet_json(&keeper.wait_for("430").await);
    assert_eq!(ack[0]["ok"], true, "{ack}");
    server.stop().await;
}

/// `emp`, deactivated by a write to the directory the server reads, as
/// another node (or `afritalk user upsert`) would make it.
async fn deactivate_elsewhere(server: &TestServer) {
    let entry = DirectoryUser {
        tenant_id: TenantId::parse("t1").unwrap(),
        user_id: UserId::parse("emp").unwrap(),
        display_name: DisplayName::parse("Name of emp").unwrap(),
        role: Role::Employe,
        active: false,
    };
    server.store.upsert(entry).await.unwrap();
}

#[tokio::test]
async fn a_user_deactivated_elsewhere_loses_their_sockets_at_the_next_sweep() {
    let server = spawn_sweeping_often().await;
    server.add_user("emp", "EMPLOYE").await;
    let listener = Polling::staff(&server, "emp", Role::Employe).await;
    let keeper = Polling::staff(&server, "dg1", Role::Dg).await;
    let emp = server.token("emp", Role::Employe);
    let conversations = "/api/tenants/t1/messaging/conversations";
    let r = server.call("GET", conversations, Some(&emp), None).await;
    assert_eq!(r.status, 200, "{}", r.body);

    deactivate_elsewhere(&server).await;
    // Their token still reads, yet the listening socket is closed…
    assert_eq!(listener.wait_for("41").await, "41");
    // …and they can neither come back nor read with it.
    let (_, reply) = Polling::connect(&server, "t1", json!({ "token": emp })).await;
    assert!(
        reply.starts_with("44") && reply.contains("your account is deactivated"),
        "{reply}"
    );
    let r = server.call("GET", conversations, Some(&emp), None).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "forbidden".to_owned()),
        "{}",
        r.body
    );
    // Everyone else stays.
    keeper.post(r#"420["presence:ping",{}]"#).await;
    let (_, ack) = packet_json(&keeper.wait_for("430").await);
    assert_eq!(ack[0]["ok"], true, "{ack}");
    server.stop().await;
}

#[tokio::test]
async fn a_deactivated_user_s_refused_event_closes_their_socket() {
    // The default sweep, every 15 s: the close must not wait for it.
    let server = spawn().await;
    server.add_user("emp", "EMPLOYE").await;
    let emp = Polling::staff(&server, "emp", Role::Employe).await;
    server.add_user("emp2", "EMPLOYE").await;
    server.add_user("boss", "PDG").await;
    let keeper = Polling::staff(&server, "emp2", Role::Employe).await;
    deactivate_elsewhere(&server).await;
    emp.post(r#"420["presence:ping",{}]"#).await;
    // The ack, then the close (the two may come in one poll).
    let packets = tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = Vec::new();
        while !seen.iter().any(|p: &String| p.starts_with("41")) {
            seen.extend(emp.poll().await);
        }
        seen
    })
    .await
    .expect("closed before the next sweep");
    let ack = packets
        .iter()
        .find(|p| p.starts_with("430"))
        .expect("acked");
    let (_, ack) = packet_json(ack);
    assert_eq!(ack[0]["error"]["code"], "forbidden", "{ack}");
    assert_eq!(ack[0]["error"]["message"], "your account is deactivated");
    // Another refusal (an Employé opening a conversation with the PDG) keeps
    // the socket.
    keeper
        .post(r#"421["messaging:send",{"toUserId":"boss","content":"Bonjour"}]"#)
        .await;
    let (_, ack) = packet_json(&keeper.wait_for("431").await);
    assert_eq!(ack[0]["error"]["code"], "forbidden", "{ack}");
    keeper.post(r#"422["presence:ping",{}]"#).await;
    let (_, ack) = packet_json(&keeper.wait_for("432").await);
    assert_eq!(ack[0]["ok"], true, "{ack}");
    server.stop().await;
}

#[tokio::test]
async fn a_user_deactivated_through_this_node_loses_their_sockets_at_once() {
    // The default sweep, every 15 s: the close must not wait for it.
    let server = spawn().await;
    server.add_user("emp", "EMPLOYE").await;
    let listener = Polling::staff(&server, "emp", Role::Employe).await;
    let pdg = server.token("boss", Role::Pdg);
    let off = json!({ "displayName": "Name of emp", "role": "EMPLOYE", "active": false });
    let r = server
        .call(
            "PUT",
            "/api/tenants/t1/directory/users/emp",
            Some(&pdg),
            Some(&off.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let closed = tokio::time::timeout(Duration::from_secs(5), listener.wait_for("41")).await;
    assert_eq!(closed.expect("closed before the next sweep"), "41");
    server.stop().await;
}

/// The server with at most `max` sockets per user, `emp` in its directory,
/// and the handshake `auth` of emp's token.
async fn spawn_capped_with_emp(max: usize) -> (TestServer, Value) {
    let config = HttpConfig {
        max_sockets_per_user: max,
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    server.add_user("emp", "EMPLOYE").await;
    let auth = json!({ "token": server.token("emp", Role::Employe) });
    (server, auth)
}

#[tokio::test]
async fn a_user_holds_at_most_the_cap_of_sockets_and_a_closed_one_frees_its_place() {
    let (server, emp) = spawn_capped_with_emp(2).await;
    let first = Polling::staff(&server, "emp", Role::Employe).await;
    let _second = Polling::staff(&server, "emp", Role::Employe).await;
    let (_, reply) = Polling::connect(&server, "t1", emp.clone()).await;
    assert!(
        reply.starts_with("44") && reply.contains("too_many_sockets"),
        "{reply}"
    );
    // Refused before anything was recorded: two connections, two audit rows.
    let pdg = server.token("boss", Role::Pdg);
    let r = server
        .call(
            "GET",
            "/api/tenants/t1/messaging/audit?action=ws.connect&userId=emp",
            Some(&pdg),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.body
    );
    let metrics = server.call("GET", "/metrics", None, None).await;
    assert!(
        metrics
            .body
            .contains("afritalk_socket_handshakes_over_cap_total 1"),
        "{}",
        metrics.body
    );
    // Other users are not counted against emp.
    let _dg = Polling::staff(&server, "dg1", Role::Dg).await;

    // The client closes one socket: its place is free again.
    first.post("41").await;
    let mut reconnected = false;
    for _ in 0..50 {
        let (_, reply) = Polling::connect(&server, "t1", emp.clone()).await;
        if reply.starts_with("40") {
            reconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected, "the closed socket's place was not freed");
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_refused_after_taking_a_place_gives_it_back() {
    let (server, emp) = spawn_capped_with_emp(1).await;
    deactivate_elsewhere(&server).await;
    for _ in 0..3 {
        let (_, reply) = Polling::connect(&server, "t1", emp.clone()).await;
        assert!(reply.contains("your account is deactivated"), "{reply}");
    }
    server.add_user("emp", "EMPLOYE").await;
    let (_, reply) = Polling::connect(&server, "t1", emp).await;
    assert!(reply.starts_with("40"), "{reply}");
    server.stop().await;
}

/// The in-process presence, slow to answer a connect (after recording it), a
/// read of statuses or a touch: the server waits there while a test acts (a
/// client leaving its handshake, events arriving together, a shutdown); or in
/// a hurry to turn a user offline.
struct SlowPresence {
    inner: LocalPresence,
    connect: Duration,
    read: Duration,
    touch: Duration,
    /// When set, a user with no connection left reads as if they had left
    /// ten minutes minus this before they did: their offline comes this long
    /// after they leave, in a test's time.
    hurry: Option<chrono::TimeDelta>,
}

impl SlowPresence {
    fn new(connect: Duration, read: Duration) -> Arc<Self> {
        Arc::new(Self::unwrapped(connect, read))
    }

    /// Slow to record activity, which a send does before its ack.
    fn slow_touch(touch: Duration) -> Arc<Self> {
        Arc::new(Self {
            touch,
            ..Self::unwrapped(Duration::ZERO, Duration::ZERO)
        })
    }

    /// Offline `grace` after the last connection closes instead of ten minutes.
    fn hurried(grace: chrono::TimeDelta) -> Arc<Self> {
        Arc::new(Self {
            hurry: Some(grace),
            ..Self::unwrapped(Duration::ZERO, Duration::ZERO)
        })
    }

    /// Only the given waits.
    fn unwrapped(connect: Duration, read: Duration) -> Self {
        Self {
            inner: LocalPresence::new(),
            connect,
            read,
            touch: Duration::ZERO,
            hurry: None,
        }
    }

    /// Records as a read returns them (hurried, when set).
    fn as_read(&self, records: Vec<PresenceRecord>) -> Vec<PresenceRecord> {
        let Some(grace) = self.hurry else {
            return records;
        };
        let shift = chrono::TimeDelta::minutes(10) - grace;
        records
            .into_iter()
            .map(|r| match r.connections {
                0 => PresenceRecord {
                    last_seen: r.last_seen - shift,
                    ..r
                },
                _ => r,
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl PresenceTracker for SlowPresence {
    async fn connect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<PresenceChange> {
        let change = self.inner.connect(tenant, user, connection, at).await;
        tokio::time::sleep(self.connect).await;
        change
    }

    async fn disconnect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<PresenceChange> {
        self.inner.disconnect(tenant, user, connection, at).await
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<PresenceChange> {
        tokio::time::sleep(self.touch).await;
        self.inner.touch(tenant, user, at).await
    }

    async fn snapshot(&self, tenant: &TenantId) -> StoreResult<Vec<PresenceRecord>> {
        tokio::time::sleep(self.read).await;
        Ok(self.as_read(self.inner.snapshot(tenant).await?))
    }

    async fn records(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<PresenceRecord>> {
        tokio::time::sleep(self.read).await;
        Ok(self.as_read(self.inner.records(tenant, users).await?))
    }
}

#[tokio::test]
async fn a_socket_send_in_flight_at_shutdown_is_acknowledged_before_the_socket_closes() {
    let mut server = spawn_over(
        HttpConfig::default(),
        RateLimits::default(),
        SlowPresence::slow_touch(Duration::from_millis(800)),
    )
    .await;
    server.add_user("emp", "EMPLOYE").await;
    let stop = server.stop.take().unwrap();
    let dg = Polling::staff(&server, "dg1", Role::Dg).await;
    let send = json!(["messaging:send", { "toUserId": "emp", "content": "avant l'arrêt" }]);
    dg.post(&format!("421{send}")).await;
    // Stored and pushed (the sender's devices get it too); its ack waits
    // 800 ms on presence. The node is told to stop while a long poll waits
    // for that ack.
    let pushed = dg.poll().await;
    assert!(pushed[0].contains("messaging:new"), "{pushed:?}");
    let (packets, ()) = tokio::join!(dg.poll(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop.send(());
    });
    let ack = packets
        .iter()
        .find(|p| p.starts_with("431"))
        .unwrap_or_else(|| panic!("no ack before the socket closed: {packets:?}"));
    let (_, ack) = packet_json(ack);
    assert_eq!(ack[0]["ok"], true, "{ack}");
    tokio::time::timeout(Duration::from_secs(15), server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_rest_sender_without_a_socket_is_announced_idle_then_offline_once_each() {
    let config = HttpConfig {
        presence_sweep_interval: Duration::from_millis(100),
        ..HttpConfig::default()
    };
    let presence = SlowPresence::hurried(chrono::TimeDelta::seconds(1));
    let server = spawn_over(config, RateLimits::default(), presence).await;
    server.add_user("emp", "EMPLOYE").await;
    let boss = Polling::staff(&server, "boss", Role::Pdg).await;
    let packet = json!(["presence:subscribe", { "userIds": ["dg1"] }]);
    boss.post(&format!("421{packet}")).await;
    boss.wait_for("431").await;

    // dg1 never opens a socket: one send over REST is all their activity.
    let dg = server.token("dg1", Role::Dg);
    let r = server.send(&dg, "emp", "hi").await;
    assert_eq!(r.status, 201, "{}", r.body);

    // dg1's statuses as boss's socket receives them; whether ack 9 came.
    let read = |packets: Vec<String>, statuses: &mut Vec<String>| {
        let mut acked = false;
        for packet in &packets {
            acked |= packet.starts_with("439");
            if !packet.starts_with("42") {
                continue;
            }
            let (_, event) = packet_json(packet);
            if event[0] == "presence:update" && event[1]["userId"] == "dg1" {
                statuses.push(event[1]["status"].as_str().unwrap().to_owned());
            }
        }
        acked
    };
    let mut statuses = Vec::new();
    for _ in 0..10 {
        read(boss.poll().await, &mut statuses);
        if statuses.len() >= 2 {
            break;
        }
    }
    // Ten more sweeps, then an ack to end the last poll: any repeat of either
    // change would be queued before it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    boss.post(r#"429["presence:ping",{}]"#).await;
    for _ in 0..10 {
        if read(boss.poll().await, &mut statuses) {
            break;
        }
    }
    assert_eq!(statuses, vec!["idle", "offline"]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_during_the_handshake_does_not_stay_connected() {
    // One socket per user: each socket below must give its place back.
    let server = spawn_over(
        HttpConfig {
            max_sockets_per_user: 1,
            ..HttpConfig::default()
        },
        RateLimits::default(),
        SlowPresence::new(Duration::from_millis(500), Duration::ZERO),
    )
    .await;
    let status_of_emp = async || {
        let pdg = server.token("boss", Role::Pdg);
        let r = server
            .call("GET", "/api/tenants/t1/presence", Some(&pdg), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["userId"] == "emp")
            .map(|p| p["status"].as_str().unwrap().to_owned())
    };
    // A socket that stays: online while connected (the check can tell).
    let token = server.token("emp", Role::Employe);
    let (stays, reply) = Polling::connect(&server, "t1", json!({ "token": token })).await;
    assert!(reply.starts_with("40"), "{reply}");
    assert_eq!(status_of_emp().await.as_deref(), Some("online"));
    stays.post("1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of_emp().await.as_deref(), Some("idle"));
    // A client that sends its CONNECT, then closes the session while the
    // server is still recording it: the connect packet cannot be sent.
    let base = "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling";
    let open = server.call("GET", base, None, None).await;
    let handshake: Value = serde_json::from_str(open.body.trim_start_matches('0')).unwrap();
    let leaver = Polling {
        server: &server,
        base: format!("{base}&sid={}", handshake["sid"].as_str().unwrap()),
    };
    leaver
        .post(&format!("40{}", json!({ "token": token })))
        .await;
    leaver.post("1").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status_of_emp().await.as_deref(),
        Some("idle"),
        "the abandoned connection is not counted"
    );
    let (_, reply) = Polling::connect(&server, "t1", json!({ "token": token })).await;
    assert!(
        reply.starts_with("40"),
        "the abandoned place is free: {reply}"
    );
    server.stop().await;
}

/// Whether the server closes `stream` within `within` (reads to EOF or error).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn connections_without_a_first_request_are_closed_at_the_deadline() {
    let config = HttpConfig {
        first_request_timeout: Duration::from_millis(600),
        ..HttpConfig::default()
    };
    let server = spawn_with(config.clone(), RateLimits::default()).await;
    // Silent, and headers begun but never finished (slowloris): open for a
    // while, then closed.
    for greeting in ["", "GET /healthz HTTP/1.1\r\nHost: t\r\n"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(greeting.as_bytes()).await.unwrap();
        assert!(
            !closed_within(&mut stream, Duration::from_millis(100)).await,
            "{greeting:?}: closed at once"
        );
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)).await,
            "{greeting:?}: still open"
        );
    }
    // A connection that made its request in time is kept alive past it.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/healthz").await, HEALTHY);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(get_on(&mut stream, "/healthz").await, HEALTHY);
    let metrics = server.app.metrics_text();
    assert!(
        metrics.contains(r#"afritalk_connections_dropped_total{reason="no_request"} 2"#),
        "{metrics}"
    );
    server.stop().await;

    // Over TLS the deadline covers the handshake: a client that opens a
    // connection and never says hello is closed too; one that speaks plain
    // HTTP fails its handshake at once.
    let (server, _dir) = spawn_tls(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    let metrics = server.app.metrics_text();
    for line in [
        r#"afritalk_connections_dropped_total{reason="no_request"} 1"#,
        r#"afritalk_connections_dropped_total{reason="tls_handshake_failed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn idle_kept_alive_connections_close_but_a_long_poll_is_not_cut() {
    let config = HttpConfig {
        keep_alive_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(1000),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/healthz").await, HEALTHY);
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

    // An Engine.IO session's poll, held by the server until its ping (1 s,
    // past the 300 ms keep-alive limit), on one kept-alive connection.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let session = open_polling_session(&mut stream).await;
    let poll = get_on(&mut stream, &session).await;
    assert_eq!(poll, "2", "the server's ping ends the poll");
    server.stop().await;
}

#[tokio::test]
async fn idle_http2_connections_close_too() {
    let config = HttpConfig {
        keep_alive_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    // HTTP/2 with prior knowledge: hyper's own keep-alive limit is HTTP/1.1's only.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get(format!("http://{}/healthz", server.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let opened = std::time::Instant::now();
    // The server closes it (GOAWAY, then EOF), which ends the client's side.
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .unwrap();
    assert!(
        opened.elapsed() >= Duration::from_millis(250),
        "{:?}",
        opened.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_rest_body_that_trickles_gets_408() {
    let config = HttpConfig {
        request_body_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /api/tenants/t1/messaging/message HTTP/1.1\r\nHost: t\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"toUserId\"";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("an answer, then the connection closed (its body is unread)")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
    let metrics = server.app.metrics_text();
    assert!(metrics.contains(r#"status="408""#), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn an_engine_io_body_that_trickles_closes_its_connection() {
    let config = HttpConfig {
        request_body_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(1000),
        ..HttpConfig::default()
    };
    let server = spawn_with(config, RateLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let session = open_polling_session(&mut stream).await;
    // A POST of the session whose body never arrives whole.
    let head = format!(
        "POST {session} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
         Content-Length: 100\r\n\r\n40"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Polls are held on purpose and have no such deadline: after the first
    // ping and its pong, the next poll waits for the next ping (1 s).
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let session = open_polling_session(&mut stream).await;
    assert_eq!(get_on(&mut stream, &session).await, "2");
    let pong = format!(
        "POST {session} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
         Content-Length: 1\r\n\r\n3"
    );
    stream.write_all(pong.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await, "ok");
    let started = std::time::Instant::now();
    assert_eq!(get_on(&mut stream, &session).await, "2");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// Opens an Engine.IO long-polling session on `stream` and returns the path
/// of its requests.
async fn open_polling_session(stream: &mut TcpStream) -> String {
    let base = "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling";
    let open = get_on(stream, base).await;
    let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
    format!("{base}&sid={}", handshake["sid"].as_str().unwrap())
}

/// The body of `/healthz`.
const HEALTHY: &str = r#"{"status":"ok"}"#;

/// Sends a GET for `path` on a kept-alive `stream`, checks that it got 200 and
/// returns the body.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(stream).await
}

/// Reads one answer from a kept-alive `stream`, checks that it is 200 and
/// returns its body.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            if body.len() >= length {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return body.to_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed: {text}");
        raw.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_pending_tls_handshake() {
    let (server, _dir) = spawn_tls(HttpConfig::default()).await;
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    // Let the accept loop take it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    server.stop().await;
    // Well under the 10 s handshake deadline and the 10 s grace period.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
