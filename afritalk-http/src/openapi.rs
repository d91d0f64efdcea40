//! The OpenAPI 3.1 document of the REST API, generated from the route table so
//! that it lists exactly the routes the server answers.

use afritalk_ports::AuditAction;
use serde_json::{Map, Value, json};

use crate::router::{QueryParam, Route, RouteId, routes};

/// The whole document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(route.method.as_str().to_ascii_lowercase(), operation(route));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "AfriTalk",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Contextual messaging of AfriGest. Realtime events use Socket.IO v4 at \
                /api/tenants/{tenantId}/messaging/socket (auth: { token })."
        },
        "paths": paths,
        "components": { "schemas": schemas(), "securitySchemes": {
            "biscuit": { "type": "http", "scheme": "bearer", "bearerFormat": "biscuit" }
        }}
    })
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

fn query_param(q: &QueryParam) -> Value {
    let schema = match q.schema {
        "date-time" => json!({ "type": "string", "format": "date-time" }),
        "uuid" => json!({ "type": "string", "format": "uuid" }),
        other => json!({ "type": other }),
    };
    json!({ "name": q.name, "in": "query", "required": false, "schema": schema, "description": q.description })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(route: &Route) -> Value {
    let mut parameters = path_params(route.path);
    parameters.extend(route.query.iter().map(query_param));
    let success = match (route.response, route.path) {
        (Some(schema), _) => json!({ "description": "Success",
            "content": { "application/json": { "schema": reference(schema) } } }),
        (None, "/metrics") => json!({ "description": "Prometheus text format",
            "content": { "text/plain": { "schema": { "type": "string" } } } }),
        (None, _) => json!({ "description": "The OpenAPI document",
            "content": { "application/json": { "schema": { "type": "object" } } } }),
    };
    let error = json!({ "description": "Error",
        "content": { "application/json": { "schema": reference("Error") } } });
    let mut responses = Map::new();
    responses.insert(route.success.to_string(), success);
    // Only a send takes a client id, so only a send's retry gets the original.
    if route.id == RouteId::SendMessage {
        responses.insert("200".into(), json!({ "description": "A retry answered with the original",
            "content": { "application/json": { "schema": reference(route.response.unwrap_or("Error")) } } }));
    }
    // Every route reads a body it is sent (to its cap and deadline, as JSON
    // only), and answers another method with 405.
    let mut codes: Vec<&str> = vec!["400", "404", "405", "408", "413", "415", "429", "503"];
    if route.authenticated {
        codes.extend(["401", "403", "409"]);
    }
    for code in codes {
        responses.insert(code.into(), error.clone());
    }
    let mut op = json!({
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": format!("{:?}", route.id),
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(map) = op.as_object_mut() {
        if route.authenticated {
            map.insert("security".into(), json!([{ "biscuit": [] }]));
        }
        if let Some(body) = route.body {
            let required = body != "ReadUpTo";
            map.insert(
                "requestBody".into(),
                json!({ "required": required,
                "content": { "application/json": { "schema": reference(body) } } }),
            );
        }
    }
    op
}

fn string() -> Value {
    json!({ "type": "string" })
}
fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}
fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}
fn nullable_time() -> Value {
    json!({ "type": ["string", "null"], "format": "date-time" })
}
fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": reference(name) })
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}
fn closed(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

fn schemas() -> Value {
    json!({
        "Error": object(&["error"], json!({ "error": object(&["code", "message"], json!({
            "code": string(), "message": string(),
            "retryAfterMs": { "type": "integer", "description": "For rate_limited: when to retry." }
        }))})),
        "Status": object(&["status"], json!({ "status": string() })),
        "Message": object(&["id", "tenantId", "conversationId", "seq", "senderId", "recipientId", "content",
            "clientMessageId", "read", "readAt", "deliveredAt", "editedAt", "deletedAt", "createdAt", "updatedAt"], json!({
            "id": { "type": "string", "format": "uuid" }, "tenantId": string(),
            "conversationId": { "type": "string", "format": "uuid" }, "seq": { "type": "integer" },
            "senderId": string(), "recipientId": string(), "content": string(),
            "relatedEntityType": string(), "relatedEntityId": string(),
            "clientMessageId": nullable("string"), "read": { "type": "boolean" },
            "readAt": nullable_time(), "deliveredAt": nullable_time(), "editedAt": nullable_time(),
            "deletedAt": nullable_time(), "createdAt": time(), "updatedAt": time()
        })),
        "Conversation": object(&["id", "tenantId", "userOneId", "userTwoId", "createdAt", "updatedAt", "lastMessageAt", "lastSeq"], json!({
            "id": { "type": "string", "format": "uuid" }, "tenantId": string(),
            "userOneId": string(), "userTwoId": string(), "createdAt": time(), "updatedAt": time(),
            "lastMessageAt": time(), "lastSeq": { "type": "integer" }
        })),
        "Participant": object(&["userId", "displayName", "role", "active"], json!({
            "userId": string(), "displayName": nullable("string"),
            "role": { "enum": ["PDG", "DG", "EMPLOYE", null] },
            "active": { "type": "boolean" }
        })),
        "ConversationListItem": object(&["conversation", "participant", "lastMessage", "unreadCount"], json!({
            "conversation": reference("Conversation"), "participant": reference("Participant"),
            "lastMessage": { "oneOf": [reference("Message"), { "type": "null" }] },
            "unreadCount": { "type": "integer" }
        })),
        "ConversationPage": object(&["conversations", "nextCursor"], json!({
            "conversations": array_of("ConversationListItem"), "nextCursor": nullable("string")
        })),
        "HistoryPage": object(&["conversationId", "messages", "nextBeforeSeq"], json!({
            "conversationId": { "type": ["string", "null"], "format": "uuid" }, "messages": array_of("Message"),
            "nextBeforeSeq": nullable("integer")
        })),
        "SendMessage": closed(&["toUserId", "content"], json!({
            "toUserId": string(), "content": { "type": "string", "minLength": 1, "maxLength": 4000 },
            "relatedEntityType": string(), "relatedEntityId": string(),
            "related": closed(&["type", "id"], json!({ "type": string(), "id": string() })),
            "clientMessageId": string()
        })),
        "SentMessage": object(&["conversationId", "message", "duplicate"], json!({
            "conversationId": { "type": "string", "format": "uuid" }, "message": reference("Message"),
            "duplicate": { "type": "boolean" }
        })),
        "EditMessage": closed(&["content"], json!({ "content": string() })),
        "ReadUpTo": closed(&[], json!({ "upToSeq": { "type": "integer" } })),
        "ReadMessages": object(&["conversationId", "messages"], json!({
            "conversationId": { "type": "string", "format": "uuid" }, "messages": array_of("Message")
        })),
        "ConversationCatchUp": object(&["conversationId", "messages", "hasMore"], json!({
            "conversationId": { "type": "string", "format": "uuid" }, "messages": array_of("Message"), "hasMore": { "type": "boolean" }
        })),
        "CatchUp": object(&["changes", "next", "cursor", "conversations", "unreadMessages", "unreadNotifications", "notifications"], json!({
            "changes": array_of("Message"),
            "next": { "oneOf": [reference("SyncCursor"), { "type": "null" }] },
            "cursor": reference("SyncCursor"),
            "conversations": array_of("ConversationListItem"),
            "unreadMessages": { "type": "integer" }, "unreadNotifications": { "type": "integer" },
            "notifications": array_of("Notification")
        })),
        "SyncCursor": object(&["since", "afterId"], json!({
            "since": time(), "afterId": { "type": ["string", "null"], "format": "uuid" },
            "settledUpTo": { "type": "string", "format": "date-time",
                "description": "On next only: pass it back with since and afterId." }
        })),
        "Notification": object(&["id", "tenantId", "userId", "title", "message", "type", "status", "pushSent", "pushSentAt", "createdAt"], json!({
            "id": { "type": "string", "format": "uuid" }, "tenantId": string(), "userId": string(),
            "title": string(), "message": string(),
            "type": { "enum": ["message", "alert", "system"] },
            "status": { "enum": ["unread", "read", "archived"] },
            "relatedEntityType": string(), "relatedEntityId": string(),
            "pushSent": { "type": "boolean" }, "pushSentAt": nullable_time(), "createdAt": time()
        })),
        "NotificationPage": object(&["notifications", "nextCursor"], json!({
            "notifications": array_of("Notification"), "nextCursor": nullable("string")
        })),
        "MarkedRead": object(&["updated"], json!({
            "updated": { "type": "integer", "description": "How many were unread and are now read." }
        })),
        "NewAlert": closed(&["userId", "type", "title", "message"], json!({
            "userId": string(), "type": { "enum": ["alert", "system"] }, "title": string(),
            "message": string(), "relatedEntityType": string(), "relatedEntityId": string()
        })),
        "Presence": object(&["userId", "status", "lastSeen"], json!({
            "userId": string(), "status": { "enum": ["online", "idle", "offline"] }, "lastSeen": time()
        })),
        "PresenceList": array_of("Presence"),
        "DirectoryEntry": closed(&["displayName", "role"], json!({
            "displayName": string(),
            "role": { "type": "string", "description": "PDG, DG or EMPLOYE (Employé accepted), case ignored." },
            "active": { "type": "boolean" }
        })),
        "DirectoryUser": object(&["tenantId", "userId", "displayName", "role", "active"], json!({
            "tenantId": string(), "userId": string(), "displayName": string(),
            "role": { "enum": ["PDG", "DG", "EMPLOYE"] }, "active": { "type": "boolean" }
        })),
        "Colleague": object(&["userId", "displayName", "role", "active", "canStartConversation", "status", "lastSeen"], json!({
            "userId": string(), "displayName": string(),
            "role": { "enum": ["PDG", "DG", "EMPLOYE"] }, "active": { "type": "boolean" },
            "status": { "enum": ["online", "idle", "offline", null], "description": "Presence now (offline when never seen; null when unknown: messaging switched off for the tenant, or presence unreachable)." },
            "lastSeen": nullable_time(),
            "canStartConversation": { "type": "boolean", "description": "The permission matrix lets the caller open a conversation with them (false for services and inactive users; a conversation they opened can be answered either way)." }
        })),
        "DirectoryPage": object(&["users", "nextCursor"], json!({
            "users": array_of("Colleague"), "nextCursor": nullable("string")
        })),
        "AuditEntry": object(&["id", "tenantId", "userId", "action", "entityType", "entityId", "details", "ipAddress", "createdAt"], json!({
            "id": { "type": "string", "format": "uuid" }, "tenantId": string(), "userId": nullable("string"),
            "action": { "enum": AuditAction::ALL.map(AuditAction::as_str) }, "entityType": nullable("string"), "entityId": nullable("string"),
            "details": { "type": "object" }, "ipAddress": nullable("string"), "createdAt": time()
        })),
        "AuditPage": object(&["entries", "nextBefore"], json!({
            "entries": array_of("AuditEntry"), "nextBefore": nullable("string")
        })),
        "MessagingSettings": closed(&["enabled"], json!({ "enabled": { "type": "boolean" } }))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_served_routes() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<_> = routes()
            .iter()
            .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
            .collect();
        assert_eq!(documented, served);
        // The seed's routes verbatim.
        for (method, path) in [
            ("GET", "/api/tenants/{tenantId}/messaging/conversations"),
            (
                "GET",
                "/api/tenants/{tenantId}/messaging/conversation/{userId}",
            ),
            ("POST", "/api/tenants/{tenantId}/messaging/message"),
            ("PUT", "/api/tenants/{tenantId}/messaging/{messageId}/read"),
            ("GET", "/api/tenants/{tenantId}/notifications"),
            (
                "PUT",
                "/api/tenants/{tenantId}/notifications/{notificationId}/read",
            ),
            ("GET", "/api/tenants/{tenantId}/presence"),
        ] {
            assert!(
                served.contains(&(method.to_owned(), path.to_owned())),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(schemas.contains_key(&name), "missing schema {name}");
        }
    }

    /// Checks `value` against the document's schema `name`: every required
    /// field is there and every field is declared, so the document says what
    /// serde sends.
    fn conforms(name: &str, value: &Value) {
        let doc = document();
        let schema = &doc["components"]["schemas"][name];
        let declared = schema["properties"].as_object().unwrap();
        let sent = value.as_object().unwrap();
        for field in schema["required"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            assert!(
                sent.contains_key(field),
                "{name}.{field} is required but not sent: {value}"
            );
        }
        for field in sent.keys() {
            assert!(
                declared.contains_key(field),
                "{name}.{field} is sent but not declared"
            );
        }
    }

    #[test]
    fn the_entities_the_server_sends_match_their_schemas() {
        use afritalk_ports::{
            AuditEntry, AuditId, Conversation, ConversationId, Message, MessageId, Notification,
            NotificationId, NotificationKind, NotificationStatus, RelatedEntity, TenantId, UserId,
        };
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let id = uuid::Uuid::from_u128(1);
        let (tenant, user) = (TenantId::parse("t1").unwrap(), UserId::parse("u1").unwrap());
        let related = RelatedEntity::new("order", "17").unwrap();
        let message = Message {
            id: MessageId::from_uuid(id),
            tenant_id: tenant.clone(),
            conversation_id: ConversationId::from_uuid(id),
            seq: 1,
            sender_id: user.clone(),
            recipient_id: UserId::parse("u2").unwrap(),
            content: "bonjour".into(),
            related: Some(related.clone()),
            client_message_id: None,
            read: false,
            read_at: None,
            delivered_at: Some(at),
            edited_at: None,
            deleted_at: None,
            created_at: at,
            updated_at: at,
        };
        conforms("Message", &serde_json::to_value(&message).unwrap());
        let plain = Message {
            related: None,
            ..message
        };
        conforms("Message", &serde_json::to_value(&plain).unwrap());
        let conversation = Conversation {
            id: ConversationId::from_uuid(id),
            tenant_id: tenant.clone(),
            user_one_id: user.clone(),
            user_two_id: UserId::parse("u2").unwrap(),
            created_at: at,
            updated_at: at,
            last_message_at: at,
            last_seq: 1,
        };
        conforms(
            "Conversation",
            &serde_json::to_value(&conversation).unwrap(),
        );
        let notification = Notification {
            id: NotificationId::from_uuid(id),
            tenant_id: tenant.clone(),
            user_id: user.clone(),
            title: "t".into(),
            message: "m".into(),
            kind: NotificationKind::Alert,
            status: NotificationStatus::Unread,
            related: Some(related),
            push_sent: false,
            push_sent_at: None,
            created_at: at,
        };
        conforms(
            "Notification",
            &serde_json::to_value(&notification).unwrap(),
        );
        let entry = AuditEntry {
            id: AuditId::from_uuid(id),
            tenant_id: tenant,
            user_id: Some(user),
            action: afritalk_ports::AuditAction::ForbiddenAttempt,
            entity_type: None,
            entity_id: None,
            details: json!({}),
            ip_address: None,
            created_at: at,
        };
        let sent = serde_json::to_value(&entry).unwrap();
        conforms("AuditEntry", &sent);
        let actions = &document()["components"]["schemas"]["AuditEntry"]["properties"]["action"];
        assert!(
            actions["enum"]
                .as_array()
                .unwrap()
                .contains(&sent["action"])
        );
    }

    #[test]
    fn path_parameters_are_declared() {
        let doc = document();
        let op = &doc["paths"]["/api/tenants/{tenantId}/messaging/{messageId}"]["patch"];
        let names: Vec<_> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("tenantId"), json!("messageId")]);
    }
}
