//! Replays the `agent_message` fuzz target's seeds (`fuzz/seeds/agent_message/`) and any crash
//! it found (`fuzz/artifacts/agent_message/`) through the target's own steps: decode a
//! `ReportRequest`, convert each body as the administrator does. None may panic, so a crash,
//! once committed, stays fixed without the nightly toolchain.

use estate_common::findings::Cause;
use estate_common::model;
use estate_common::objects::ObjectStats;
use estate_common::pb::{self, report_request::Body};
use prost::Message;

#[path = "../../fuzz/replay.rs"]
mod replay;

/// The fuzz target's body: whether the bytes decoded as a message.
fn convert(data: &[u8]) -> bool {
    let Ok(request) = pb::ReportRequest::decode(data) else { return false };
    match request.body {
        Some(Body::Bucket(snapshot)) => {
            if let Some(facts) = snapshot.facts {
                let _ = model::BucketFacts::try_from(facts);
            }
            if let Some(cause) = snapshot.cause {
                let _ = Cause::try_from(cause);
            }
        }
        Some(Body::AccountSettings(settings)) => {
            let _ = model::AccountSettings::try_from(settings);
        }
        Some(Body::AccountSettingsChanged(changed)) => {
            if let Some(settings) = changed.settings {
                let _ = model::AccountSettings::try_from(settings);
            }
            if let Some(cause) = changed.cause {
                let _ = Cause::try_from(cause);
            }
        }
        Some(Body::BucketObjects(objects)) => {
            if let Some(stats) = objects.objects {
                let _ = ObjectStats::try_from(stats);
            }
        }
        _ => {}
    }
    true
}

#[test]
fn every_agent_message_seed_and_crash_input_converts_or_fails_without_a_panic() {
    let (seeds, crashes) = replay::inputs("agent_message", 8);
    let mut decoded = 0;
    for path in seeds.iter().chain(&crashes) {
        let data = std::fs::read(path).expect("a readable input");
        let ok = std::panic::catch_unwind(|| convert(&data)).unwrap_or_else(|_| panic!("{} panics", path.display()));
        decoded += usize::from(ok);
    }
    assert_eq!(decoded, seeds.len() + crashes.len(), "every seed is a message");
}
