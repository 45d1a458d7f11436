use std::collections::HashMap;

use netsvc::value::{Opaque, to_value};
use netsvc::{Runtime, Value};

async fn echo(rt: &Runtime, v: Value) -> Value {
    rt.endpoint("echo").call("echo", vec![v]).await.unwrap()
}

fn echo_service(rt: &Runtime) -> netsvc::Service {
    rt.service("echo")
        .export("echo", |req| async move {
            Ok(req.into_args().into_iter().next().unwrap_or(Value::None))
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn s33_a_tuple_arrives_as_a_list_and_non_string_keys_cannot_be_encoded() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let tuple = to_value(&(1, "two", 3.5)).unwrap();
    assert_eq!(
        echo(&rt, tuple).await,
        Value::List(vec![1.into(), "two".into(), 3.5.into()])
    );
    let mut bad = HashMap::new();
    bad.insert((1, 2), "x");
    assert!(to_value(&bad).is_err());
}

#[tokio::test]
async fn s34_opaque_values_round_trip() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let opaque = Value::Opaque(Opaque {
        type_name: "my:type".into(),
        data: b"x".to_vec(),
    });
    assert_eq!(echo(&rt, opaque.clone()).await, opaque);
}

#[tokio::test]
async fn s35_a_user_type_that_serializes_as_a_sequence_is_sent_as_a_list() {
    struct Triple(i64, i64, i64);
    impl serde::Serialize for Triple {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            [self.0, self.1, self.2].serialize(s)
        }
    }
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let v = to_value(&Triple(1, 2, 3)).unwrap();
    assert_eq!(
        echo(&rt, v).await,
        Value::List(vec![1.into(), 2.into(), 3.into()])
    );
}

#[tokio::test]
async fn s36_none_and_the_empty_string_stay_distinct() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    assert_eq!(echo(&rt, Value::None).await, Value::None);
    assert_eq!(echo(&rt, "".into()).await, Value::from(""));
}
