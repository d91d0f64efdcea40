//! Black-box tests: the real application on a free port, driven over HTTP and
//! with the official JavaScript `socket.io-client`. They automate the seed's QA
//! runbook (seed 000 §12) end to end, then tenancy and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use afritalk_core::ActorKind;
use afritalk_ports::Role;
use serde_json::{Value, json};
use support::clients::Clients;
use support::{TestApp, spawn_app, start, status_of};

const T: &str = "acme";

/// A tenant with a PDG, a DG and two employees in the directory.
async fn company(app: &TestApp) {
    app.add_user(T, "pdg", "PDG").await;
    app.add_user(T, "dg", "DG").await;
    app.add_user(T, "emp", "EMPLOYE").await;
    app.add_user(T, "emp2", "Employé").await;
}

fn ok_ack(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "ack refused: {ack}");
    ack
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_arrives_live_on_every_socket_of_the_recipient_with_delivered_and_read_receipts()
{
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect(&app, "emp-phone", T, &emp, "websocket")
        .await
        .unwrap();
    c.connect(&app, "emp-laptop", T, &emp, "polling")
        .await
        .unwrap();

    let ack = c
        .emit("dg", "messaging:send", json!({ "toUserId": "emp", "content": "Commande 17 prête ?", "clientMessageId": "c-1" }))
        .await;
    let message = ok_ack(&ack)["message"].clone();
    assert_eq!(message["content"], "Commande 17 prête ?");
    assert_eq!(message["seq"], 1);
    let id = message["id"].as_str().unwrap().to_owned();

    for socket in ["emp-phone", "emp-laptop"] {
        let new = c.next_event(socket, "messaging:new").await;
        assert_eq!(new["message"]["id"], id.as_str());
        assert_eq!(new["conversationId"], ack["conversationId"]);
    }
    // ✓✓: the recipients' sockets acknowledged messaging:new.
    let delivered = c.next_event("dg", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], id.as_str());
    assert!(delivered["deliveredAt"].is_string());

    // Read by the recipient: the sender learns it with readAt.
    let ack = c
        .emit("emp-phone", "messaging:read", json!({ "messageId": id }))
        .await;
    ok_ack(&ack);
    let read = c.next_event("dg", "messaging:read").await;
    assert_eq!(read["messageId"], id.as_str());
    assert!(read["readAt"].is_string());
    // Its notification is read with it: the bell of every device clears.
    let updated = c.next_event("emp-laptop", "notify:updated").await;
    assert_eq!(
        updated,
        json!({ "notificationId": null, "status": "read", "unreadCount": 0 })
    );
    let (_, bell) = app
        .get(&format!("/api/tenants/{T}/notifications"), &emp)
        .await;
    assert_eq!(bell["notifications"][0]["status"], "read", "{bell}");

    // The stored message carries both receipts.
    let (status, history) = app
        .get(&format!("/api/tenants/{T}/messaging/conversation/emp"), &dg)
        .await;
    assert_eq!(status, 200, "{history}");
    let stored = &history["messages"][0];
    assert_eq!(stored["read"], true);
    assert!(stored["deliveredAt"].is_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_shows_both_users_online_then_not_online_after_disconnect() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();

    let (status, list) = app.get(&format!("/api/tenants/{T}/presence"), &dg).await;
    assert_eq!(status, 200);
    assert_eq!(status_of(&list, "dg"), "online");
    assert_eq!(status_of(&list, "emp"), "online");

    c.disconnect("emp").await;
    // The server sees the close shortly after the client.
    let mut after = String::new();
    for _ in 0..150 {
        let (_, list) = app.get(&format!("/api/tenants/{T}/presence"), &dg).await;
        after = status_of(&list, "emp");
        if after != "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, "idle", "seen a moment ago, no longer connected");
    app.stop().await;
}

/// A connected socket watches the presence of its user's conversation
/// partners, and only theirs.
#[tokio::test(flavor = "multi_thread")]
async fn a_partner_coming_online_is_pushed_to_the_user_and_not_to_strangers() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let emp2 = app.token(T, "emp2", Role::Employe);
    let (status, body) = app.send(T, &dg, "emp", "Point à 10 h").await;
    assert_eq!(status, 201, "{body}");
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect(&app, "emp2", T, &emp2, "websocket")
        .await
        .unwrap();

    // A socket's partners are looked up just after its connect packet, so dg
    // may not watch emp yet when emp first connects: emp comes online again
    // until dg is told.
    let mut told = false;
    for _ in 0..10 {
        c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();
        told = c
            .arrives_within(Duration::from_secs(1), |r| {
                r["client"] == "dg"
                    && r["event"] == "presence:update"
                    && r["data"]["userId"] == "emp"
                    && r["data"]["status"] == "online"
            })
            .await;
        if told {
            break;
        }
        c.disconnect("emp").await;
    }
    assert!(told, "dg was never told that emp came online");
    assert!(
        !c.receives_within("emp2", "presence:update", Duration::from_millis(500))
            .await,
        "emp2 has no conversation with emp"
    );
    app.stop().await;
}

/// The tenant's `forbidden_attempt` audit rows, as `reader` (a PDG) sees them.
async fn forbidden_attempts(app: &TestApp, reader: &str) -> Vec<Value> {
    let path = format!("/api/tenants/{T}/messaging/audit?action=forbidden_attempt");
    let (status, rows) = app.get(&path, reader).await;
    assert_eq!(status, 200, "{rows}");
    rows["entries"].as_array().expect("audit rows").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn employe_to_pdg_is_403_with_a_forbidden_attempt_audit_row_and_the_reply_rule_holds() {
    let app = spawn_app().await;
    company(&app).await;
    let pdg = app.token(T, "pdg", Role::Pdg);
    let emp = app.token(T, "emp", Role::Employe);

    let (status, body) = app.send(T, &emp, "pdg", "Bonjour patron").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");

    let rows = forbidden_attempts(&app, &pdg).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["userId"], "emp");
    assert!(
        rows[0]["ipAddress"]
            .as_str()
            .is_some_and(|ip| ip.contains("127.0.0.1"))
    );

    // The PDG writes first; now the employee may answer in that conversation.
    let (status, _) = app.send(T, &pdg, "emp", "Passe me voir").await;
    assert_eq!(status, 201);
    let (status, body) = app.send(T, &emp, "pdg", "J'arrive").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["seq"], 2);

    // An employee may not read the audit trail.
    let (status, _) = app
        .get(&format!("/api/tenants/{T}/messaging/audit"), &emp)
        .await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_client_gets_unread_counts_and_everything_it_missed_in_one_call() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let since = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    for text in ["un", "deux", "trois"] {
        assert_eq!(app.send(T, &dg, "emp", text).await.0, 201);
    }
    // Back online, the employee catches up on the socket: everything since the
    // beginning (no `since`), now delivered, and the sender sees ✓✓.
    c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();
    let ack = c.emit("emp", "messaging:join", json!({})).await;
    let changes = ok_ack(&ack)["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 3, "{ack}");
    assert!(
        changes.iter().all(|m| m["deliveredAt"].is_string()),
        "{ack}"
    );
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(c.next_event("dg", "messaging:delivered").await["messageId"].clone());
    }
    delivered.sort_by_key(|id| id.to_string());
    let mut sent: Vec<Value> = changes.iter().map(|m| m["id"].clone()).collect();
    sent.sort_by_key(|id| id.to_string());
    assert_eq!(delivered, sent);
    // The cursor to keep: the changes are a second old, and one stamped just
    // before them might still be on its way to the store, so the resume point
    // stays thirty seconds behind the server's clock, before all three.
    let cursor = &ok_ack(&ack)["cursor"];
    assert_eq!(cursor["afterId"], Value::Null, "{ack}");
    let time = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(
        time(&cursor["since"]) < time(&changes[0]["createdAt"]),
        "{ack}"
    );
    let (status, sync) = app
        .get(
            &format!(
                "/api/tenants/{T}/messaging/sync?since={}",
                since
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .replace('+', "%2B")
            ),
            &emp,
        )
        .await;
    assert_eq!(status, 200, "{sync}");
    let contents: Vec<&str> = sync["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["un", "deux", "trois"]);
    assert_eq!(sync["unreadMessages"], 3);
    assert_eq!(sync["unreadNotifications"], 3);
    // The bell comes in the same call: the three unread ones, newest first.
    let bell: Vec<&str> = sync["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(bell, vec!["trois", "deux", "un"], "{sync}");
    assert_eq!(sync["conversations"][0]["unreadCount"], 3);
    assert_eq!(sync["conversations"][0]["participant"]["userId"], "dg");
    // Resuming from the answer's cursor within thirty seconds: the same three
    // come again (a client applies them by id), and nothing is delivered twice.
    let resume = &sync["cursor"];
    assert_eq!(resume["afterId"], Value::Null, "{sync}");
    let (status, again) = app
        .get(
            &format!(
                "/api/tenants/{T}/messaging/sync?since={}",
                resume["since"].as_str().unwrap().replace('+', "%2B"),
            ),
            &emp,
        )
        .await;
    assert_eq!(status, 200, "{again}");
    let ids = |v: &Value| -> Vec<Value> {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect()
    };
    assert_eq!(ids(&again), ids(&sync), "{again}");
    assert!(
        !c.receives_within("dg", "messaging:delivered", Duration::from_millis(500))
            .await,
        "a message delivered once is not told again"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_run_of_pages_resumes_before_the_point_its_first_page_had_settled() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    for text in ["un", "deux", "trois"] {
        assert_eq!(app.send(T, &dg, "emp", text).await.0, 201);
    }
    let time = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let mut c = Clients::start().await;
    c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();
    // The first page is full: `next` carries the run's settled point, 30 s
    // before the server read it; the cursor to keep does not.
    let before = chrono::Utc::now();
    let ack = c.emit("emp", "messaging:join", json!({ "limit": 2 })).await;
    let after = chrono::Utc::now();
    let first = ok_ack(&ack).clone();
    let next = &first["next"];
    let settled = time(&next["settledUpTo"]);
    let thirty = chrono::TimeDelta::seconds(30);
    assert!(
        before - thirty <= settled && settled <= after - thirty,
        "{first}"
    );
    assert_eq!(first["cursor"]["settledUpTo"], Value::Null, "{first}");
    // Paging on with `next` whole: the last page resumes from that point,
    // however much later it is read (here, as if the run had started an hour
    // ago), not from its own last change.
    let mut page = next.clone();
    page["settledUpTo"] = json!("2026-01-01T00:00:00Z");
    page["limit"] = json!(10);
    let ack = c.emit("emp", "messaging:join", page.clone()).await;
    let last = ok_ack(&ack);
    // All three: the first page marked them delivered ("trois" as its
    // conversation's last message), which changed them.
    let mut contents: Vec<&str> = last["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    contents.sort_unstable();
    assert_eq!(contents, ["deux", "trois", "un"], "{ack}");
    assert_eq!(last["next"], Value::Null, "{ack}");
    assert_eq!(
        last["cursor"],
        json!({ "since": "2026-01-01T00:00:00Z", "afterId": null }),
        "{ack}"
    );
    // The same page over REST, and a settled point that is not a time.
    let query = |settled: &str| {
        format!(
            "/api/tenants/{T}/messaging/sync?since={}&afterId={}&settledUpTo={settled}&limit=10",
            next["since"].as_str().unwrap().replace('+', "%2B"),
            next["afterId"].as_str().unwrap(),
        )
    };
    let (status, sync) = app.get(&query("2026-01-01T00:00:00Z"), &emp).await;
    assert_eq!(status, 200, "{sync}");
    assert_eq!(sync["cursor"], last["cursor"], "{sync}");
    let (status, refused) = app.get(&query("hier"), &emp).await;
    assert_eq!(status, 400, "{refused}");
    page["settledUpTo"] = json!("+10000-01-01T00:00:00Z");
    let ack = c.emit("emp", "messaging:join", page).await;
    assert_eq!(ack["error"]["code"], "validation", "{ack}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_message_no_longer_counts_on_the_recipient_s_bell() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let (_, kept) = app.send(T, &dg, "emp", "garde").await;
    let (_, gone) = app.send(T, &dg, "emp", "oups").await;
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();
    let ack = c
        .emit(
            "dg",
            "messaging:delete",
            json!({ "messageId": gone["message"]["id"] }),
        )
        .await;
    assert_eq!(ok_ack(&ack)["message"]["content"], "", "{ack}");
    // The recipient's devices are told their badge's new count…
    let updated = c.next_event("emp", "notify:updated").await;
    assert_eq!(updated["unreadCount"], 1, "{updated}");
    assert_eq!(updated["status"], "read", "{updated}");
    // …and the list agrees: only the message still there is unread.
    let (status, list) = app
        .get(&format!("/api/tenants/{T}/notifications"), &emp)
        .await;
    assert_eq!(status, 200, "{list}");
    let unread: Vec<&Value> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "unread")
        .collect();
    assert_eq!(unread.len(), 1, "{list}");
    assert_eq!(
        unread[0]["relatedEntityId"], kept["message"]["id"],
        "{list}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_payload_forms_work_unchanged() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let (_, sent) = app.send(T, &dg, "emp", "bonjour").await;
    let conv = sent["conversationId"].clone();
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect(&app, "emp", T, &emp, "websocket").await.unwrap();
    // Seed 004's Flutter client: emit('conv:subscribe', convId), a bare id.
    let ack = c.emit("emp", "conv:subscribe", conv.clone()).await;
    assert_eq!(ok_ack(&ack)["conversation"]["id"], conv, "{ack}");
    let ack = c.emit("dg", "typing:start", conv.clone()).await;
    ok_ack(&ack);
    let typing = c.next_event("emp", "typing:start").await;
    assert_eq!(typing["userId"], "dg", "{typing}");
    let ack = c.emit("emp", "conv:unsubscribe", conv.clone()).await;
    ok_ack(&ack);
    // Seed 000's messaging:join { userId }: one's own id is accepted (the
    // room was joined at connect), with no catch-up unless asked…
    let ack = c
        .emit("emp", "messaging:join", json!({ "userId": "emp" }))
        .await;
    assert_eq!(ok_ack(&ack).get("changes"), None, "{ack}");
    let asked = json!({ "userId": "emp", "since": "2026-01-01T00:00:00Z" });
    let ack = c.emit("emp", "messaging:join", asked).await;
    assert_eq!(ok_ack(&ack)["changes"][0]["content"], "bonjour", "{ack}");
    // …and someone else's is refused, joining nothing.
    let ack = c
        .emit("emp", "messaging:join", json!({ "userId": "dg" }))
        .await;
    assert_eq!(ack["error"]["code"], "validation", "{ack}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conversation_list_delivers_the_last_message_it_shows() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    let (_, first) = app.send(T, &dg, "emp", "premier").await;
    let (_, last) = app.send(T, &dg, "emp", "dernier").await;
    // The employee, offline until now, opens the app on the conversation list.
    let (status, list) = app
        .get(&format!("/api/tenants/{T}/messaging/conversations"), &emp)
        .await;
    assert_eq!(status, 200, "{list}");
    let shown = &list["conversations"][0]["lastMessage"];
    assert_eq!(shown["id"], last["message"]["id"], "{list}");
    assert!(shown["deliveredAt"].is_string(), "{list}");
    let delivered = c.next_event("dg", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], last["message"]["id"]);
    // Only what the list showed: the first message waits for the history.
    let (_, history) = app
        .get(&format!("/api/tenants/{T}/messaging/conversation/emp"), &dg)
        .await;
    let by_id = |id: &Value| {
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| &m["id"] == id)
            .cloned()
            .unwrap()
    };
    assert!(by_id(&first["message"]["id"])["deliveredAt"].is_null());
    assert!(by_id(&last["message"]["id"])["deliveredAt"].is_string());
    assert!(
        !c.receives_within("dg", "messaging:delivered", Duration::from_millis(300))
            .await
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_finds_colleagues_by_name_and_says_whom_the_caller_may_write_to() {
    let app = spawn_app().await;
    let admin = app.service_token(T, "directory-sync");
    for (id, name, role, active) in [
        ("pdg", "Aminata Touré", "PDG", true),
        ("dg", "Élodie Koné", "DG", true),
        ("emp", "Moussa Diarra", "EMPLOYE", true),
        ("emp2", "Awa Sow", "EMPLOYE", true),
        ("gone", "Elodie Bamba", "DG", false),
    ] {
        let (status, body) = app
            .put(
                &format!("/api/tenants/{T}/directory/users/{id}"),
                &admin,
                json!({ "displayName": name, "role": role, "active": active }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.add_user("globex", "spy", "DG").await;
    let emp = app.token(T, "emp", Role::Employe);
    let list = |query: &'static str| {
        let (app, emp) = (&app, &emp);
        async move {
            app.get(&format!("/api/tenants/{T}/directory/users{query}"), emp)
                .await
        }
    };
    let rows = |body: &Value| -> Vec<(String, bool)> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                let id = u["userId"].as_str().unwrap().to_owned();
                (id, u["canStartConversation"].as_bool().unwrap())
            })
            .collect()
    };
    let owned = |pairs: &[(&str, bool)]| -> Vec<(String, bool)> {
        pairs.iter().map(|(id, b)| (id.to_string(), *b)).collect()
    };

    // By name, the caller left out, the inactive and the other tenant too; an
    // employee may not open a conversation with the PDG.
    let (status, body) = list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rows(&body),
        owned(&[("pdg", false), ("emp2", true), ("dg", true)])
    );
    assert_eq!(body["users"][2]["displayName"], "Élodie Koné");
    assert_eq!(body["users"][2]["role"], "DG");
    assert!(body["nextCursor"].is_null());

    // Accents and case do not matter; inactive people on request.
    let (_, body) = list("?q=ELODIE").await;
    assert_eq!(rows(&body), owned(&[("dg", true)]));
    let (_, body) = list("?q=elodie&includeInactive=true").await;
    assert_eq!(rows(&body), owned(&[("gone", false), ("dg", true)]));
    let (_, body) = list("?q=%20%20").await;
    assert_eq!(rows(&body).len(), 3, "a blank search lists everyone");

    // Pages follow nextCursor.
    let (_, first) = list("?limit=2").await;
    assert_eq!(rows(&first), owned(&[("pdg", false), ("emp2", true)]));
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let (_, second) = app
        .get(
            &format!("/api/tenants/{T}/directory/users?limit=2&after={cursor}"),
            &emp,
        )
        .await;
    assert_eq!(rows(&second), owned(&[("dg", true)]));
    // That page ended on the caller, left out: one more, empty, ends the list.
    let cursor = second["nextCursor"].as_str().unwrap().to_owned();
    let (_, third) = app
        .get(
            &format!("/api/tenants/{T}/directory/users?limit=2&after={cursor}"),
            &emp,
        )
        .await;
    assert_eq!(rows(&third), owned(&[]));
    assert!(third["nextCursor"].is_null(), "{third}");

    // Bad input is a clear 400.
    for bad in [
        "?limit=0",
        "?after=nobody",
        "?after=zz_emp2",
        "?includeInactive=maybe",
        "?after=",
    ] {
        let (status, body) = list(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    let (status, body) = app
        .get(
            &format!("/api/tenants/{T}/directory/users?q={}", "x".repeat(101)),
            &emp,
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("validation"))
    );

    // One colleague by id, for a link that opens a conversation.
    let (status, dg) = list("/dg").await;
    assert_eq!(status, 200, "{dg}");
    assert_eq!(
        (&dg["status"], &dg["lastSeen"]),
        (&json!("offline"), &json!(null))
    );
    assert_eq!(
        (&dg["displayName"], &dg["canStartConversation"]),
        (&json!("Élodie Koné"), &json!(true))
    );
    assert_eq!(list("/pdg").await.1["canStartConversation"], false);
    for unknown in ["/ghost", "/spy"] {
        let (status, body) = list(unknown).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("not_found")),
            "{unknown}"
        );
    }

    // Presence shows in the list: the DG connects (their token's name refreshes
    // the directory), the PDG was never seen.
    let mut c = Clients::start().await;
    let dg_token = app.token(T, "dg", Role::Dg);
    c.connect(&app, "dg", T, &dg_token, "websocket")
        .await
        .unwrap();
    let (_, body) = list("").await;
    let presence: Vec<(&str, &str, bool)> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let id = u["userId"].as_str().unwrap();
            (id, u["status"].as_str().unwrap(), u["lastSeen"].is_string())
        })
        .collect();
    assert_eq!(
        presence,
        [
            ("pdg", "offline", false),
            ("emp2", "offline", false),
            ("dg", "online", true)
        ]
    );

    assert_eq!(list("/dg").await.1["status"], "online");

    // Another tenant's token cannot read this directory.
    let spy = app.token("globex", "spy", Role::Dg);
    let (status, _) = app
        .get(&format!("/api/tenants/{T}/directory/users"), &spy)
        .await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mark_all_as_read_clears_the_caller_s_unread_notifications_only() {
    let app = spawn_app().await;
    company(&app).await;
    let emp = app.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "emp-laptop", T, &emp, "websocket")
        .await
        .unwrap();
    let stock = app.service_token(T, "stock-service");
    for (user, title) in [
        ("emp", "Stock bas"),
        ("emp", "Rupture"),
        ("emp2", "Stock bas"),
    ] {
        let body = json!({ "userId": user, "type": "alert", "title": title, "message": "P-9" });
        let (status, created) = app
            .post(&format!("/api/tenants/{T}/notifications"), &stock, body)
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let dg = app.token(T, "dg", Role::Dg);
    assert_eq!(app.send(T, &dg, "emp", "Commande 17").await.0, 201);
    let read_all = format!("/api/tenants/{T}/notifications/read-all");

    let (status, body) = app.put(&read_all, &emp, json!({})).await;
    assert_eq!((status, &body["updated"]), (200, &json!(3)), "{body}");
    // The user's other devices clear their badge.
    let updated = c.next_event("emp-laptop", "notify:updated").await;
    assert_eq!(
        updated,
        json!({ "notificationId": null, "status": "read", "unreadCount": 0 })
    );
    let (_, list) = app
        .get(&format!("/api/tenants/{T}/notifications"), &emp)
        .await;
    let statuses: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["read", "read", "read"], "{list}");
    let (_, sync) = app
        .get(&format!("/api/tenants/{T}/messaging/sync"), &emp)
        .await;
    assert_eq!(sync["unreadNotifications"], 0, "{sync}");
    // Idempotent, and a colleague's stay unread.
    assert_eq!(app.put(&read_all, &emp, json!({})).await.1["updated"], 0);
    let emp2 = app.token(T, "emp2", Role::Employe);
    let (_, theirs) = app
        .get(&format!("/api/tenants/{T}/notifications"), &emp2)
        .await;
    assert_eq!(theirs["notifications"][0]["status"], "unread", "{theirs}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_loses_nothing() {
    let (config, dir) = support::fresh_config();
    let app = start(config).await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    for i in 0..20 {
        assert_eq!(
            app.send(T, &dg, "emp", &format!("message {i}")).await.0,
            201
        );
    }
    let (config, _) = app.stop().await;
    let app = start(config).await;
    let emp = app.token(T, "emp", Role::Employe);
    let (status, history) = app
        .get(
            &format!("/api/tenants/{T}/messaging/conversation/dg?limit=100"),
            &emp,
        )
        .await;
    assert_eq!(status, 200);
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 20);
    assert_eq!(messages[0]["content"], "message 19");
    assert_eq!(messages[0]["seq"], 20);
    app.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_of_another_tenant_never_receives_or_fetches_anything() {
    let app = spawn_app().await;
    company(&app).await;
    // Same user ids in another tenant: different people.
    app.add_user("globex", "emp", "EMPLOYE").await;
    app.add_user("globex", "dg", "DG").await;
    let dg = app.token(T, "dg", Role::Dg);
    let spy = app.token("globex", "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "spy", "globex", &spy, "websocket")
        .await
        .unwrap();
    c.connect(
        &app,
        "emp",
        T,
        &app.token(T, "emp", Role::Employe),
        "websocket",
    )
    .await
    .unwrap();

    let (status, sent) = app.send(T, &dg, "emp", "confidentiel").await;
    assert_eq!(status, 201);
    c.next_event("emp", "messaging:new").await;
    assert!(
        !c.receives_within("spy", "messaging:new", Duration::from_millis(500))
            .await
    );
    assert!(
        !c.receives_within("spy", "notify:new", Duration::from_millis(100))
            .await
    );

    // Nothing of acme through globex's REST either: ids answer 404, lists are empty.
    let id = sent["message"]["id"].as_str().unwrap();
    let (status, _) = app
        .put(
            &format!("/api/tenants/globex/messaging/{id}/read"),
            &spy,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, list) = app
        .get("/api/tenants/globex/messaging/conversations", &spy)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    // A globex token on acme's path is refused and leaks nothing.
    let (status, body) = app
        .get(&format!("/api/tenants/{T}/messaging/conversations"), &spy)
        .await;
    assert_eq!(status, 403, "{body}");
    // Nor can it open a socket on acme's path.
    let err = c
        .connect(&app, "spy2", T, &spy, "websocket")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let path = format!("/api/tenants/{T}/messaging/message");

    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&dg)
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    let (status, body) = support::split(res).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_string());
    // A form is not read as JSON, even one that happens to parse as JSON.
    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&dg)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"toUserId":"emp","content":"as a form"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = support::split(res).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let (status, body) = app.send(T, &dg, "emp", &"x".repeat(4_001)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "validation");
    let (status, body) = app.send(T, &dg, "emp", "   ").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.send(T, &dg, "ghost", "hello").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app
        .post(
            &path,
            &dg,
            json!({ "toUserId": "emp", "content": "x", "relatedEntityType": "order" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Over the body cap: 413. The server answers without reading the body and
    // drops the connection, which must not go back to the client's pool (the
    // next request could be written to it as it closes).
    let huge = json!({ "toUserId": "emp", "content": "y".repeat(300_000) });
    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&dg)
        .header(reqwest::header::CONNECTION, "close")
        .json(&huge)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 413);

    // Unknown route: JSON 404.
    let (status, body) = app.get("/api/nothing-here", &dg).await;
    assert_eq!(status, 404);
    assert!(body["error"]["code"].is_string());

    // Nothing was stored by any of these.
    let emp = app.token(T, "emp", Role::Employe);
    let (_, list) = app
        .get(&format!("/api/tenants/{T}/messaging/conversations"), &emp)
        .await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);

    // Over the socket: validation errors come back in the ack, unknown events too.
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    let ack = c
        .emit(
            "dg",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "" }),
        )
        .await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "validation");
    let ack = c
        .emit("dg", "messaging:send", json!({ "toUserId": "emp" }))
        .await;
    assert_eq!(ack["ok"], false);
    let ack = c.emit("dg", "no:such-event", json!({})).await;
    assert_eq!(ack["ok"], false);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_emitted_while_connecting_is_answered() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let mut c = Clients::start().await;
    // socket.io-client sends a buffered emit the moment the connect packet
    // arrives; each socket must already have its handlers by then.
    for i in 0..20 {
        let ack = c
            .emit_while_connecting(
                &app,
                &format!("dg{i}"),
                T,
                &dg,
                "messaging:send",
                json!({ "toUserId": "emp", "content": format!("early {i}") }),
            )
            .await;
        assert_eq!(ok_ack(&ack)["message"]["content"], format!("early {i}"));
    }
    let emp = app.token(T, "emp", Role::Employe);
    let (_, history) = app
        .get(&format!("/api/tenants/{T}/messaging/conversation/dg"), &emp)
        .await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        20,
        "{history}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_expired_and_attenuated_tokens_are_refused() {
    let app = spawn_app().await;
    company(&app).await;
    let path = format!("/api/tenants/{T}/messaging/conversations");

    let (status, body) = app.get(&path, "not-a-token").await;
    assert_eq!(status, 401, "{body}");
    let res = app.http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);

    let expired = app.mint(T, "dg", ActorKind::Staff(Role::Dg), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app.get(&path, &expired).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "token_expired");

    // A token signed by another root key.
    let other = afritalk_auth::TokenMinter::new(afritalk_auth::RootKeyPair::generate())
        .mint(
            &afritalk_auth::Identity {
                tenant: afritalk_ports::TenantId::parse(T).unwrap(),
                user: afritalk_ports::UserId::parse("dg").unwrap(),
                kind: ActorKind::Staff(Role::Dg),
                name: None,
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let (status, _) = app.get(&path, &other).await;
    assert_eq!(status, 401);

    // A read-only attenuation: reading works, sending is refused.
    let token = app.token(T, "dg", Role::Dg);
    let read_only = support::attenuate_read_only(&token);
    let (status, _) = app.get(&path, &read_only).await;
    assert_eq!(status, 200);
    let (status, body) = app.send(T, &read_only, "emp", "hi").await;
    assert_eq!(status, 403, "{body}");

    let mut c = Clients::start().await;
    let err = c
        .connect(&app, "x", T, &expired, "websocket")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_checks_each_write_as_a_write() {
    let app = spawn_app().await;
    company(&app).await;
    let mut c = Clients::start().await;
    let token = app.token(T, "dg", Role::Dg);
    let conversation = format!("/api/tenants/{T}/messaging/conversation/emp");

    // Read-only: a send is refused, and the socket stays for reading.
    let read_only = support::attenuate_read_only(&token);
    c.connect(&app, "ro", T, &read_only, "websocket")
        .await
        .unwrap();
    let send = json!({ "toUserId": "emp", "content": "lecture seule" });
    let ack = c.emit("ro", "messaging:send", send).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "operation_not_allowed", "{ack}");
    let ack = c.emit("ro", "presence:ping", json!({})).await;
    assert_eq!(ack["ok"], true, "the read-only socket stays: {ack}");

    // Writes allowed for less time than reads: the socket's writes stop at
    // the write deadline, although the token still reads.
    let deadline = std::time::SystemTime::now() + Duration::from_secs(4);
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    let short_writes = support::attenuate_writes_until(&token, deadline);
    c.connect(&app, "dg", T, &short_writes, "websocket")
        .await
        .unwrap();
    let ack = c
        .emit(
            "dg",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "à temps" }),
        )
        .await;
    ok_ack(&ack);
    // The authorizer's clock has whole seconds: wait past the next one.
    tokio::time::sleep_until(until + Duration::from_millis(2_100)).await;
    let ack = c
        .emit(
            "dg",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "trop tard" }),
        )
        .await;
    assert_eq!(ack["ok"], false, "a write after the deadline: {ack}");
    // Reported as expired (its time ran out), yet the socket still reads.
    assert_eq!(ack["error"]["code"], "token_expired", "{ack}");
    let ack = c.emit("dg", "presence:ping", json!({})).await;
    assert_eq!(ack["ok"], true, "the socket stays for reading: {ack}");
    let (status, history) = app.get(&conversation, &short_writes).await;
    assert_eq!(status, 200, "the token still reads: {history}");
    let contents: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(contents, vec![json!("à temps")]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_ack_from_the_recipient_is_a_delivery() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    c.connect_acking_empty(&app, "emp", T, &emp).await.unwrap();
    let ack = c
        .emit(
            "dg",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "Reçu ?" }),
        )
        .await;
    let id = ok_ack(&ack)["message"]["id"].clone();
    let new = c.next_event("emp", "messaging:new").await;
    assert_eq!(new["message"]["id"], id);
    let delivered = c.next_event("dg", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], id);
    let (_, history) = app
        .get(&format!("/api/tenants/{T}/messaging/conversation/emp"), &dg)
        .await;
    assert!(
        history["messages"][0]["deliveredAt"].is_string(),
        "{history}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversize_websocket_message_closes_the_socket_and_stores_nothing() {
    let app = spawn_app().await;
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let mut c = Clients::start().await;
    c.connect(&app, "dg", T, &dg, "websocket").await.unwrap();
    // 100 KB in one websocket frame, over the 64 KiB cap.
    c.emit_raw(
        "dg",
        "messaging:send",
        json!({ "toUserId": "emp", "content": "z".repeat(100_000) }),
    )
    .await;
    let closed = c
        .wait_for(|r| r["client"] == "dg" && r["kind"] == "disconnected")
        .await;
    assert!(closed.is_some(), "the server closed the socket");
    let emp = app.token(T, "emp", Role::Employe);
    let (_, list) = app
        .get(&format!("/api/tenants/{T}/messaging/conversations"), &emp)
        .await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_s_body_cap_is_the_one_applied() {
    // A 3,000-character message fits the default 64 KiB cap but not 2 KiB.
    let (mut config, dir) = support::fresh_config();
    config.edge.max_body_bytes = 2 * 1024;
    let mut app = start(config).await;
    app.keep_data_dir(dir);
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let (status, body) = app.send(T, &dg, "emp", &"w".repeat(1_000)).await;
    assert_eq!(status, 201, "{body}");
    // Last: the server answers 413 without reading the body and closes.
    let (status, body) = app.send(T, &dg, "emp", &"w".repeat(3_000)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_does_not_outlive_its_token() {
    let app = spawn_app().await;
    company(&app).await;
    // The clients start first: the first start in a run installs the npm
    // packages, which can take longer than the token lives.
    let mut c = Clients::start().await;
    // Expiry and the authorizer's clock both have whole-second precision, so a
    // token minted with a 5 s lifetime is accepted for at least 4 s (time to
    // connect and ping on a loaded CI machine) and at most 6 s after minting.
    let short = app.mint(T, "dg", ActorKind::Staff(Role::Dg), Duration::from_secs(5));
    // Taken after minting (which reads the key file): the token cannot
    // expire later than 6 s after this instant.
    let minted = tokio::time::Instant::now();
    c.connect(&app, "dg", T, &short, "websocket").await.unwrap();
    c.connect(&app, "dg-2", T, &short, "websocket")
        .await
        .unwrap();
    let ack = c.emit("dg", "presence:ping", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    tokio::time::sleep_until(minted + Duration::from_millis(6_300)).await;
    // Even an event the server does not know is checked first.
    let ack = c.emit("dg-2", "no:such-event", json!({})).await;
    assert_eq!(ack["error"]["code"], "token_expired", "{ack}");
    let closed = c
        .wait_for(|r| r["client"] == "dg-2" && r["kind"] == "disconnected")
        .await;
    assert!(closed.is_some(), "the server closed the second socket");
    let ack = c
        .emit(
            "dg",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "trop tard" }),
        )
        .await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "token_expired");
    let closed = c
        .wait_for(|r| r["client"] == "dg" && r["kind"] == "disconnected")
        .await;
    assert!(closed.is_some(), "the server closed the socket");
    let emp = app.token(T, "emp", Role::Employe);
    let (_, list) = app
        .get(&format!("/api/tenants/{T}/messaging/conversations"), &emp)
        .await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    app.stop().await;
}

/// A Socket.IO client over HTTP long-polling that reads only when asked to:
/// until then, the server's outgoing buffer for it fills like a slow client's.
struct LazyPoller {
    http: reqwest::Client,
    url: String,
}

impl LazyPoller {
    /// Opens an Engine.IO session and connects to the namespace with `token`.
    async fn connect(app: &TestApp, tenant: &str, token: &str) -> Self {
        let http = reqwest::Client::new();
        let base = format!(
            "{}{}/?EIO=4&transport=polling",
            app.address,
            app.socket_path(tenant)
        );
        let open = http.get(&base).send().await.unwrap().text().await.unwrap();
        let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
        let url = format!("{base}&sid={}", handshake["sid"].as_str().unwrap());
        let connect = format!("40{}", json!({ "token": token }));
        let res = http.post(&url).body(connect).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let poller = Self { http, url };
        let read = poller.poll_until_packet("40{").await;
        assert!(read.iter().any(|p| p.starts_with("40{")), "{read:?}");
        poller
    }

    /// One long-poll: the packets the server had buffered.
    async fn poll(&self) -> Vec<String> {
        let body = get_text(&self.http, &self.url).await;
        body.split('\u{1e}').map(str::to_owned).collect()
    }

    /// Polls until a packet naming `event` arrives (or 10 s pass); returns
    /// every packet read meanwhile.
    async fn poll_until(&self, event: &str) -> Vec<String> {
        self.poll_until_packet(&format!("[\"{event}\"")).await
    }

    /// Polls until a packet containing `marker` arrives (or 10 s pass);
    /// returns every packet read meanwhile.
    async fn poll_until_packet(&self, marker: &str) -> Vec<String> {
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let packets = tokio::time::timeout(Duration::from_secs(2), self.poll())
                .await
                .unwrap_or_default();
            let found = packets.iter().any(|p| p.contains(marker));
            read.extend(packets);
            if found {
                break;
            }
        }
        read
    }
}

/// The body of a GET to `url`, as text.
async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// How many packets of `read` carry `event`.
fn count_events(read: &[String], event: &str) -> usize {
    let marker = format!("[\"{event}\"");
    read.iter().filter(|p| p.contains(&marker)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_too_slow_for_its_events_is_told_to_catch_up_not_left_with_a_gap() {
    let (mut config, dir) = support::fresh_config();
    config.rate_limits = afritalk_bin::config::parse_rate_limits("send=1000/10").unwrap();
    let mut app = start(config).await;
    app.keep_data_dir(dir);
    company(&app).await;
    let dg = app.token(T, "dg", Role::Dg);
    let emp = app.token(T, "emp", Role::Employe);
    let slow = LazyPoller::connect(&app, T, &emp).await;

    // Each send is two events for the employee's socket (messaging:new and
    // notify:new): 80 sends overflow its buffer of 128 packets.
    for i in 0..80 {
        let (status, body) = app.send(T, &dg, "emp", &format!("ligne {i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let metrics = get_text(&app.http, &app.url("/metrics")).await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("afritalk_socket_events_dropped_total "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(dropped > 0, "the buffer never overflowed");

    // The client reads what fitted, then the next event finds room again:
    // the socket is told to catch up (at that event, or by the sweep) before
    // the event itself.
    let mut read = slow.poll().await;
    assert_eq!(app.send(T, &dg, "emp", "la suite").await.0, 201);
    read.extend(slow.poll_until("sync:required").await);
    let told = read
        .iter()
        .position(|p| p.contains("[\"sync:required\""))
        .expect("the socket was never told it missed events");
    assert!(read[told].contains("events_dropped"), "{}", read[told]);
    if let Some(next) = read.iter().position(|p| p.contains("la suite")) {
        assert!(told < next, "told after the next event: {read:?}");
    }
    let lines = read
        .iter()
        .filter(|p| p.contains("[\"messaging:new\"") && p.contains("ligne "))
        .count();
    assert!(lines < 80, "all 80 messages arrived: nothing was lost?");
    // Told once: the flag is cleared.
    assert_eq!(app.send(T, &dg, "emp", "encore").await.0, 201);
    let read = slow.poll_until_packet("encore").await;
    assert!(read.iter().any(|p| p.contains("encore")), "{read:?}");
    assert_eq!(count_events(&read, "sync:required"), 0, "{read:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_token_cannot_open_a_socket_and_its_attempt_is_on_the_trail() {
    let app = spawn_app().await;
    company(&app).await;
    let stock = app.service_token(T, "stock-service");
    let mut c = Clients::start().await;
    let err = c
        .connect(&app, "stock", T, &stock, "websocket")
        .await
        .unwrap_err();
    assert!(err.contains("staff"), "{err}");
    let pdg = app.token(T, "pdg", Role::Pdg);
    let rows = forbidden_attempts(&app, &pdg).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["userId"], "stock-service");
    assert_eq!(rows[0]["details"]["operation"], "ws.connect", "{rows:?}");
    // Refused before anything was recorded: the service never shows connected.
    let (_, presence) = app.get(&format!("/api/tenants/{T}/presence"), &pdg).await;
    assert!(
        !presence.to_string().contains("stock-service"),
        "{presence}"
    );
    app.stop().await;
}
