//! The Engine.IO v4 / Socket.IO v5 packet codec, for the websocket transport
//! only (one packet per websocket text frame, no binary attachments).
//!
//! Engine.IO frames start with a type digit:
//! `0` open (`0{"sid":…,"pingInterval":…}`), `1` close, `2` ping, `3` pong,
//! `4` message, `5` upgrade, `6` noop. The server pings (`2`) and the client
//! must answer `3`.
//!
//! An Engine.IO message (`4`) carries one Socket.IO packet, itself starting with
//! a type digit: `0` connect, `1` disconnect, `2` event, `3` ack, `4` connect
//! error (`5`/`6` are binary variants this client never uses). Then an optional
//! namespace (`/admin,`; the main namespace `/` is omitted), an optional ack id
//! (decimal digits) and the JSON payload:
//!
//! | frame | meaning |
//! |---|---|
//! | `40{"token":"…"}` | client connects to `/` with an auth object |
//! | `40{"sid":"…"}` | server accepted the connection |
//! | `44{"message":"…"}` | server refused it |
//! | `42["name",{…}]` | event without ack |
//! | `4212["name",{…}]` | event asking for ack id 12 |
//! | `4312[{…}]` | ack 12 with its arguments |

use serde_json::Value;

/// A frame that is not a packet this client understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad packet `{frame}`: {reason}")]
pub struct ProtocolError {
    /// The start of the offending frame (at most 80 characters).
    pub frame: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn bad(frame: &str, reason: &'static str) -> ProtocolError {
    ProtocolError {
        frame: frame.chars().take(80).collect(),
        reason,
    }
}

/// One decoded websocket text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Engine.IO open, with its handshake data (`sid`, `pingInterval`, …).
    Open(Value),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping (answer with [`PONG`]).
    Ping,
    /// Engine.IO pong.
    Pong,
    /// Engine.IO noop or upgrade (nothing to do over websocket).
    Noop,
    /// Socket.IO connect accepted, with its data (`{"sid":…}`).
    Connect(Value),
    /// Socket.IO disconnect of the namespace.
    Disconnect,
    /// Socket.IO event.
    Event {
        /// The ack id the sender asked for, if any.
        id: Option<u64>,
        /// The event name.
        name: String,
        /// The first argument after the name (`null` when there is none).
        data: Value,
    },
    /// Socket.IO ack of one of our events.
    Ack {
        /// The ack id we sent the event with.
        id: u64,
        /// The first ack argument (`null` when there is none).
        data: Value,
    },
    /// Socket.IO connect refused, with its data (`{"message":…}`).
    ConnectError(Value),
}

/// The Engine.IO pong frame, the answer to a server ping.
pub const PONG: &str = "3";

/// Decodes one websocket text frame.
pub fn decode(frame: &str) -> Result<Packet, ProtocolError> {
    let mut chars = frame.chars();
    let engine = chars.next().ok_or_else(|| bad(frame, "empty frame"))?;
    let rest = chars.as_str();
    match engine {
        '0' => serde_json::from_str(rest)
            .map(Packet::Open)
            .map_err(|_| bad(frame, "open packet without a JSON object")),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping),
        '3' => Ok(Packet::Pong),
        '5' | '6' => Ok(Packet::Noop),
        '4' => decode_socket(frame, rest),
        _ => Err(bad(frame, "unknown Engine.IO packet type")),
    }
}

fn decode_socket(frame: &str, body: &str) -> Result<Packet, ProtocolError> {
    let mut chars = body.chars();
    let kind = chars
        .next()
        .ok_or_else(|| bad(frame, "empty Socket.IO packet"))?;
    let mut rest = chars.as_str();
    // A namespace other than `/` comes first, up to a comma; this client only
    // uses the main namespace, so it is skipped.
    if rest.starts_with('/') {
        rest = match rest.split_once(',') {
            Some((_, after)) => after,
            None => "",
        };
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, json) = rest.split_at(digits);
    let id = if id.is_empty() {
        None
    } else {
        Some(
            id.parse::<u64>()
                .map_err(|_| bad(frame, "ack id out of range"))?,
        )
    };
    let value = || -> Result<Value, ProtocolError> {
        if json.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(json).map_err(|_| bad(frame, "payload is not JSON"))
        }
    };
    match kind {
        '0' => value().map(Packet::Connect),
        '1' => Ok(Packet::Disconnect),
        '2' => {
            let Value::Array(args) = value()? else {
                return Err(bad(frame, "event payload is not an array"));
            };
            let mut args = args.into_iter();
            let Some(Value::String(name)) = args.next() else {
                return Err(bad(frame, "event without a name"));
            };
            Ok(Packet::Event {
                id,
                name,
                data: args.next().unwrap_or(Value::Null),
            })
        }
        '3' => {
            let id = id.ok_or_else(|| bad(frame, "ack without an id"))?;
            let data = match value()? {
                Value::Array(args) => args.into_iter().next().unwrap_or(Value::Null),
                _ => return Err(bad(frame, "ack payload is not an array")),
            };
            Ok(Packet::Ack { id, data })
        }
        '4' => value().map(Packet::ConnectError),
        '5' | '6' => Err(bad(frame, "binary packets are not supported")),
        _ => Err(bad(frame, "unknown Socket.IO packet type")),
    }
}

/// `40{auth}`: connect to the main namespace with an auth object.
pub fn encode_connect(auth: &Value) -> String {
    format!("40{auth}")
}

/// `42[id]["name",data]`: an event, asking for an ack when `id` is given.
pub fn encode_event(id: Option<u64>, name: &str, data: &Value) -> String {
    let args = Value::Array(vec![Value::String(name.to_owned()), data.clone()]);
    match id {
        Some(id) => format!("42{id}{args}"),
        None => format!("42{args}"),
    }
}

/// `43id[data]`: our ack of a server event that asked for one.
pub fn encode_ack(id: u64, data: &Value) -> String {
    format!("43{id}[{data}]")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets_decode() {
        assert_eq!(
            decode(r#"0{"sid":"abc","pingInterval":25000}"#).unwrap(),
            Packet::Open(json!({"sid":"abc","pingInterval":25000}))
        );
        assert_eq!(decode("1").unwrap(), Packet::Close);
        assert_eq!(decode("2").unwrap(), Packet::Ping);
        assert_eq!(decode("3").unwrap(), Packet::Pong);
        assert_eq!(decode("6").unwrap(), Packet::Noop);
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
        assert!(decode("0nope").is_err());
    }

    #[test]
    fn connect_and_refusal_decode() {
        assert_eq!(
            decode(r#"40{"sid":"x1"}"#).unwrap(),
            Packet::Connect(json!({"sid":"x1"}))
        );
        assert_eq!(
            decode(r#"44{"message":"unauthorized: bad token"}"#).unwrap(),
            Packet::ConnectError(json!({"message":"unauthorized: bad token"}))
        );
        assert_eq!(decode("41").unwrap(), Packet::Disconnect);
    }

    #[test]
    fn events_with_and_without_ack_ids_decode() {
        assert_eq!(
            decode(r#"42["presence:update",{"userId":"u1"}]"#).unwrap(),
            Packet::Event {
                id: None,
                name: "presence:update".into(),
                data: json!({"userId":"u1"}),
            }
        );
        assert_eq!(
            decode(r#"4217["messaging:new",{"conversationId":"c"}]"#).unwrap(),
            Packet::Event {
                id: Some(17),
                name: "messaging:new".into(),
                data: json!({"conversationId":"c"}),
            }
        );
        assert_eq!(
            decode(r#"42["ping"]"#).unwrap(),
            Packet::Event {
                id: None,
                name: "ping".into(),
                data: Value::Null
            }
        );
        // A namespace prefix is skipped.
        assert_eq!(
            decode(r#"42/admin,3["x",1]"#).unwrap(),
            Packet::Event {
                id: Some(3),
                name: "x".into(),
                data: json!(1)
            }
        );
        assert!(decode(r#"42{"not":"an array"}"#).is_err());
        assert!(decode(r#"42[1,2]"#).is_err());
    }

    #[test]
    fn acks_decode() {
        assert_eq!(
            decode(r#"435[{"ok":true,"conversationId":"c"}]"#).unwrap(),
            Packet::Ack {
                id: 5,
                data: json!({"ok":true,"conversationId":"c"}),
            }
        );
        assert_eq!(
            decode("430[]").unwrap(),
            Packet::Ack {
                id: 0,
                data: Value::Null
            }
        );
        assert!(decode(r#"43[{"ok":true}]"#).is_err());
        assert!(decode("4399999999999999999999[]").is_err());
    }

    #[test]
    fn encoding_round_trips_through_the_decoder() {
        let auth = json!({"token":"abc"});
        assert_eq!(encode_connect(&auth), r#"40{"token":"abc"}"#);
        let data = json!({"toUserId":"u2","content":"hi"});
        let frame = encode_event(Some(42), "messaging:send", &data);
        assert!(frame.starts_with(r#"4242["messaging:send",{"#));
        assert_eq!(
            decode(&frame).unwrap(),
            Packet::Event {
                id: Some(42),
                name: "messaging:send".into(),
                data: data.clone()
            }
        );
        assert_eq!(
            encode_event(None, "presence:ping", &json!({})),
            r#"42["presence:ping",{}]"#
        );
        let ack = encode_ack(9, &json!({"ok":true}));
        assert_eq!(ack, r#"439[{"ok":true}]"#);
        assert_eq!(
            decode(&ack).unwrap(),
            Packet::Ack {
                id: 9,
                data: json!({"ok":true})
            }
        );
        assert_eq!(PONG, "3");
    }
}
