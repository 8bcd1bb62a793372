//! Property tests of the protocol decoders: no input makes them panic, and every valid
//! message survives an encode/decode round trip unchanged.

use model::Phase;
use model::protocol::*;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![Just("type"), Just("event"), Just("seq"), Just("rseq")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("event".to_owned()),
                    Just("seq".to_owned()),
                    Just("text".to_owned()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("event"),
        Just("hello"),
        Just("idle"),
        Just("ping"),
        Just("pong"),
        Just("welcome"),
        Just("ack"),
        Just("user_message"),
        Just("interrupt"),
        Just("stop"),
        Just("finish"),
        Just("set_model"),
        Just("model_changed"),
        Just("ask"),
        Just("answer"),
        Just("send_message"),
        Just("live"),
        Just("error"),
        Just("agent_message"),
        Just("tool_use"),
        Just("phase"),
        Just("result"),
    ]
    .prop_map(str::to_owned)
}

fn decode_all(text: &str) {
    let _ = RunnerToServer::decode(text);
    let _ = ServerToRunner::decode(text);
    let _ = BrowserToServer::decode(text);
    let _ = ServerToBrowser::decode(text);
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        0.0f64..1e6,
    )
        .prop_map(|(a, b, c, d, cost)| Usage {
            input_tokens: a,
            output_tokens: b,
            cache_read_input_tokens: c,
            cache_creation_input_tokens: d,
            cost_usd: cost,
        })
}

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(Phase::ALL.to_vec())
}

fn event() -> impl Strategy<Value = SessionEvent> {
    prop_oneof![
        (text(), text())
            .prop_map(|(text, sender)| SessionEvent::UserMessage(UserMessage { text, sender })),
        (
            proptest::option::of(text()),
            text(),
            proptest::option::of(text())
        )
            .prop_map(|(message_id, text, parent)| {
                SessionEvent::AgentMessage(AgentMessage {
                    message_id,
                    text,
                    parent_tool_use_id: parent,
                })
            }),
        (proptest::option::of(text()), text()).prop_map(|(message_id, text)| {
            SessionEvent::AgentDelta(AgentDelta { message_id, text })
        }),
        text().prop_map(|text| SessionEvent::Thinking(Thinking {
            message_id: None,
            text
        })),
        (text(), text(), json_value()).prop_map(|(id, name, input)| SessionEvent::ToolUse(
            ToolUse {
                id,
                name,
                input,
                parent_tool_use_id: None
            }
        )),
        (text(), text(), any::<bool>()).prop_map(|(tool_use_id, content, is_error)| {
            SessionEvent::ToolResult(ToolResult {
                tool_use_id,
                content,
                is_error,
            })
        }),
        (
            phase(),
            proptest::option::of(text()),
            proptest::option::of(text())
        )
            .prop_map(|(phase, reason, message)| SessionEvent::Phase(PhaseChange {
                phase,
                reason,
                message
            })),
        (text(), proptest::option::of(text()))
            .prop_map(|(message, code)| SessionEvent::Error(ErrorEvent { message, code })),
        (
            any::<bool>(),
            text(),
            any::<u32>(),
            any::<u64>(),
            usage(),
            proptest::option::of(text()),
            proptest::option::of(text())
        )
            .prop_map(
                |(is_error, subtype, num_turns, duration_ms, usage, text, resume_at)| {
                    SessionEvent::TurnResult(TurnResult {
                        is_error,
                        subtype,
                        num_turns,
                        duration_ms,
                        usage,
                        text,
                        resume_at,
                    })
                }
            ),
        (
            any::<i32>(),
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
            usage()
        )
            .prop_map(|(exit_code, is_error, num_turns, duration_ms, usage)| {
                SessionEvent::Result(RunResult {
                    exit_code,
                    is_error,
                    num_turns,
                    duration_ms,
                    usage,
                    text: None,
                })
            }),
        text().prop_map(|sender| SessionEvent::StopRequested(ControlEcho { sender })),
        (text(), text())
            .prop_map(|(model, sender)| SessionEvent::ModelChanged(ModelChange { model, sender })),
        (text(), text(), text()).prop_map(|(id, sender, answer)| SessionEvent::Answer(Answer {
            id,
            sender,
            answers: [("q".to_owned(), answer)].into(),
            ..Default::default()
        })),
        (text(), text(), any::<u64>()).prop_map(|(repo, url, number)| SessionEvent::PullRequest(
            PullRequest { repo, url, number }
        )),
        (text(), text(), any::<bool>()).prop_map(|(repo, diff, held)| SessionEvent::Changes(
            RepoChanges {
                repo,
                diff,
                held,
                ..RepoChanges::default()
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_a_decoder(s in ".{0,200}") {
        decode_all(&s);
    }

    #[test]
    fn arbitrary_json_never_panics_a_decoder(v in json_value(), t in tag()) {
        decode_all(&v.to_string());
        // The same value with a real type tag, to get past the first dispatch.
        if let Value::Object(mut m) = v {
            m.insert("type".into(), Value::String(t));
            decode_all(&Value::Object(m).to_string());
        }
    }

    #[test]
    fn truncated_valid_frames_never_panic(e in event(), cut in 0usize..400) {
        let frame = RunnerToServer::Event(RunnerEvent { rseq: 1, ts: 0, event: e }).encode();
        let mut end = cut.min(frame.len());
        while !frame.is_char_boundary(end) { end -= 1; }
        decode_all(&frame[..end]);
    }

    #[test]
    fn every_valid_message_round_trips(e in event(), seq in any::<u64>(), ts in any::<i64>()) {
        let up = RunnerToServer::Event(RunnerEvent { rseq: seq, ts, event: e.clone() });
        prop_assert_eq!(RunnerToServer::decode(&up.encode()).unwrap(), up);
        let down = ServerToBrowser::Event(StoredEvent { seq, ts, event: e.clone() });
        prop_assert_eq!(ServerToBrowser::decode(&down.encode()).unwrap(), down.clone());
        // The hub's pre-encoded path gives the same bytes.
        prop_assert_eq!(encode_event_frame(seq, ts, &encode_event(&e)), down.encode());
    }
}
