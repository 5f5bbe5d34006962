use prost::Message;

use super::*;
use crate::span::{Encoded, Event, SpanData, Status, Value};

fn sample() -> SpanData {
    SpanData {
        trace_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
        span_id: 0x1112_1314_1516_1718,
        parent_span_id: Some(0x2122_2324_2526_2728),
        name: DEFAULT_NAME.into(),
        model: "gpt-4o".into(),
        provider: Some("openai".into()),
        user_id: Some("u1".into()),
        session_id: Some("s1".into()),
        status: Status::Error,
        error_type: Some("TimeoutError".into()),
        error_message: Some("took too long".into()),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        metadata: vec![
            ("prompt_tokens".into(), Value::Int(12)),
            ("completion_tokens".into(), Value::Int(30)),
            (
                "actual_model".into(),
                Value::Str("gpt-4o-2024-08-06".into()),
            ),
            ("finish_reason".into(), Value::Str("stop".into())),
            ("token_count_method".into(), Value::Str("tiktoken".into())),
            ("retry_count".into(), Value::Int(2)),
            ("temperature".into(), Value::Float(0.5)),
            ("tags".into(), Value::Deferred(0)),
            ("nothing".into(), Value::Null),
        ],
        ..SpanData::default()
    }
}

fn options() -> Options<'static> {
    Options {
        default_service: "svc",
        resource_attributes: &[],
        limits: Limits {
            max_value_bytes: 1024,
            max_content_bytes: 1 << 16,
            max_span_bytes: usize::MAX,
        },
        max_request_bytes: 4 << 20,
        openinference: false,
    }
}

fn attr<'a>(span: &'a proto::Span, key: &str) -> Option<&'a proto::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn s(value: &str) -> proto::Value {
    proto::Value::StringValue(value.into())
}

#[test]
fn maps_a_span_with_the_genai_conventions() {
    let deferred = [Encoded::Json("[\"a\",\"b\"]".into())];
    let data = sample();
    let (bodies, report) = encode([(&data, &deferred[..])], Protocol::Protobuf, &options());
    assert_eq!(bodies.len(), 1);
    assert_eq!(report.truncated, 0);
    let request = proto::ExportTraceServiceRequest::decode(&bodies[0][..]).unwrap();
    let resource_spans = &request.resource_spans[0];
    let resource = resource_spans.resource.as_ref().unwrap();
    assert_eq!(
        resource.attributes[0],
        proto::KeyValue::string("service.name", "svc")
    );
    let span = &resource_spans.scope_spans[0].spans[0];
    assert_eq!(span.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(span.span_id, (0x11..=0x18).collect::<Vec<u8>>());
    assert_eq!(span.parent_span_id, (0x21..=0x28).collect::<Vec<u8>>());
    assert_eq!(span.name, "chat gpt-4o");
    assert_eq!(span.kind, proto::SPAN_KIND_CLIENT);
    let status = span.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "took too long"));
    assert_eq!(attr(span, "gen_ai.operation.name"), Some(&s("chat")));
    assert_eq!(attr(span, "gen_ai.request.model"), Some(&s("gpt-4o")));
    assert_eq!(attr(span, "gen_ai.provider.name"), Some(&s("openai")));
    assert_eq!(attr(span, "gen_ai.conversation.id"), Some(&s("s1")));
    assert_eq!(attr(span, "user.id"), Some(&s("u1")));
    assert_eq!(attr(span, "error.type"), Some(&s("TimeoutError")));
    assert_eq!(
        attr(span, "gen_ai.usage.input_tokens"),
        Some(&proto::Value::IntValue(12))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens"),
        Some(&proto::Value::IntValue(30))
    );
    assert_eq!(
        attr(span, "gen_ai.response.model"),
        Some(&s("gpt-4o-2024-08-06"))
    );
    assert_eq!(
        attr(span, "gen_ai.response.finish_reasons"),
        Some(&proto::Value::ArrayValue(proto::ArrayValue {
            values: vec![proto::AnyValue {
                value: Some(s("stop"))
            }]
        }))
    );
    assert_eq!(
        attr(span, "instrumentation_sdk.token_count_method"),
        Some(&s("tiktoken"))
    );
    assert_eq!(
        attr(span, "instrumentation_sdk.retry_count"),
        Some(&proto::Value::IntValue(2))
    );
    assert_eq!(
        attr(span, "gen_ai.request.temperature"),
        Some(&proto::Value::DoubleValue(0.5))
    );
    assert_eq!(attr(span, "tags"), Some(&s("[\"a\",\"b\"]")));
    assert_eq!(attr(span, "nothing"), None);
    assert_eq!(attr(span, "llm.model_name"), None);
}

#[test]
fn openinference_names_on_request() {
    let data = sample();
    let mut opts = options();
    opts.openinference = true;
    let (_, span) = to_span(&data, &[], &opts, &mut EncodeReport::default());
    assert_eq!(attr(&span, "llm.model_name"), Some(&s("gpt-4o")));
    assert_eq!(attr(&span, "openinference.span.kind"), Some(&s("LLM")));
    assert_eq!(
        attr(&span, "llm.token_count.total"),
        Some(&proto::Value::IntValue(42))
    );
}

#[test]
fn custom_names_stay_and_ok_is_unset() {
    let mut data = sample();
    data.name = "router".into();
    data.status = Status::Ok;
    let (_, span) = to_span(&data, &[], &options(), &mut EncodeReport::default());
    assert_eq!(span.name, "router");
    assert_eq!(span.status.as_ref().unwrap().code, proto::STATUS_CODE_UNSET);
    assert_eq!(attr(&span, "error.type"), None);
    data.name = "embeddings".into();
    let (_, span) = to_span(&data, &[], &options(), &mut EncodeReport::default());
    assert_eq!(span.name, "embeddings gpt-4o");
}

#[test]
fn batches_split_under_the_size_cap_and_group_by_service() {
    let mut spans: Vec<SpanData> = (0..200).map(|_| sample()).collect();
    spans[7].service_name = Some("other".into());
    let mut opts = options();
    opts.max_request_bytes = 16 * 1024;
    for protocol in [Protocol::Protobuf, Protocol::Json] {
        let (bodies, _) = encode(spans.iter().map(|s| (s, &[][..])), protocol, &opts);
        assert!(bodies.len() > 2, "{protocol:?}");
        assert!(bodies.iter().all(|b| b.len() <= 16 * 1024));
        if protocol == Protocol::Protobuf {
            let decoded: Vec<_> = bodies
                .iter()
                .map(|b| proto::ExportTraceServiceRequest::decode(&b[..]).unwrap())
                .collect();
            let total: usize = decoded
                .iter()
                .flat_map(|r| &r.resource_spans)
                .map(|r| r.scope_spans[0].spans.len())
                .sum();
            assert_eq!(total, 200);
            assert_eq!(decoded[0].resource_spans.len(), 2);
        }
    }
}

#[test]
fn json_follows_the_otlp_json_rules() {
    let data = sample();
    let (bodies, _) = encode([(&data, &[][..])], Protocol::Json, &options());
    let json: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(span["parentSpanId"], "2122232425262728");
    assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(span["kind"], 3);
    assert_eq!(span["status"]["code"], 2);
    let tokens = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "gen_ai.usage.input_tokens")
        .unwrap();
    assert_eq!(tokens["value"]["intValue"], "12");
}

#[test]
fn reads_partial_success() {
    let response = proto::ExportTraceServiceResponse {
        partial_success: Some(proto::ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: "too old".into(),
        }),
    };
    assert_eq!(
        proto::decode_partial_success(&response.encode_to_vec()).unwrap(),
        (3, "too old".to_owned())
    );
    assert_eq!(
        proto::decode_partial_success(b"").unwrap(),
        (0, String::new())
    );
}

#[test]
fn events_and_captured_content_are_exported() {
    let mut data = sample();
    data.events.push(Event {
        name: "retry".into(),
        time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![
            ("attempt".into(), Value::Int(2)),
            ("why".into(), Value::Deferred(0)),
        ],
    });
    data.prompt = Some(Value::Str("What is 2+2?".into()));
    data.completion = Some(Value::Deferred(1));
    let deferred = [
        Encoded::Json("{\"code\":503}".into()),
        Encoded::Json("[{\"role\":\"assistant\",\"content\":\"4\"}]".into()),
    ];
    let mut opts = options();
    opts.openinference = true;
    for protocol in [Protocol::Protobuf, Protocol::Json] {
        let (bodies, _) = encode([(&data, &deferred[..])], protocol, &opts);
        let span = if protocol == Protocol::Protobuf {
            let request = proto::ExportTraceServiceRequest::decode(&bodies[0][..]).unwrap();
            request.resource_spans[0].scope_spans[0].spans[0].clone()
        } else {
            let json: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
            let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
            assert_eq!(span["events"][0]["name"], "retry");
            assert_eq!(span["events"][0]["timeUnixNano"], "1700000000100000000");
            continue;
        };
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "retry");
        assert_eq!(span.events[0].time_unix_nano, 1_700_000_000_100_000_000);
        assert_eq!(
            span.events[0].attributes,
            vec![
                proto::KeyValue::new("attempt", proto::Value::IntValue(2)),
                proto::KeyValue::string("why", "{\"code\":503}"),
            ]
        );
        let Some(proto::Value::StringValue(input)) = attr(&span, "gen_ai.input.messages") else {
            panic!("no input messages");
        };
        let input: serde_json::Value = serde_json::from_str(input).unwrap();
        assert_eq!(input[0]["parts"][0]["content"], "What is 2+2?");
        let Some(proto::Value::StringValue(output)) = attr(&span, "gen_ai.output.messages") else {
            panic!("no output messages");
        };
        let output: serde_json::Value = serde_json::from_str(output).unwrap();
        assert_eq!(output[0]["parts"][0]["content"], "4");
        assert_eq!(output[0]["finish_reason"], "stop");
        assert_eq!(attr(&span, "input.value"), Some(&s("What is 2+2?")));
        assert_eq!(attr(&span, "input.mime_type"), Some(&s("text/plain")));
        assert_eq!(
            attr(&span, "output.mime_type"),
            Some(&s("application/json"))
        );
    }
}

#[test]
fn every_record_field_reaches_otlp() {
    let mut data = sample();
    data.service_name = Some("svc-own".into());
    data.events.push(Event {
        name: "e".into(),
        time_unix_nano: 5,
        attributes: vec![],
    });
    data.prompt = Some(Value::Str("p".into()));
    data.completion = Some(Value::Str("c".into()));
    let (service, span) = to_span(&data, &[], &options(), &mut EncodeReport::default());
    for spec in &FIELDS {
        let present = match spec.field {
            Field::TraceId => span.trace_id.iter().any(|b| *b != 0),
            Field::SpanId => span.span_id.iter().any(|b| *b != 0),
            Field::ParentSpanId => !span.parent_span_id.is_empty(),
            Field::Name => !span.name.is_empty(),
            Field::Status => span.status.as_ref().is_some_and(|s| s.code == 2),
            Field::ErrorMessage => span.status.as_ref().is_some_and(|s| !s.message.is_empty()),
            Field::StartTime => span.start_time_unix_nano != 0,
            Field::EndTime => span.end_time_unix_nano != 0,
            Field::ServiceName => service == "svc-own",
            Field::Metadata => attr(&span, "gen_ai.request.temperature").is_some(),
            Field::Events => span.events.len() == 1,
            Field::Model
            | Field::Provider
            | Field::UserId
            | Field::SessionId
            | Field::ErrorType
            | Field::Prompt
            | Field::Completion => attr(&span, spec.otlp).is_some(),
        };
        assert!(
            present,
            "{} ({}) is missing from the OTLP span",
            spec.key, spec.otlp
        );
    }
}
