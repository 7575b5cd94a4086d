//! Every agent message, decoded from arbitrary protobuf bytes and converted into the domain
//! model exactly as the administrator converts it: a value or a conversion error, never a
//! panic, whatever the counters, enums, timestamps or strings say.
#![no_main]

use estate_common::findings::Cause;
use estate_common::model;
use estate_common::objects::ObjectStats;
use estate_common::pb;
use libfuzzer_sys::fuzz_target;
use pb::report_request::Body;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = pb::ReportRequest::decode(data) else { return };
    match request.body {
        Some(Body::Bucket(snapshot)) => {
            if let Some(facts) = snapshot.facts {
                let _ = model::BucketFacts::try_from(facts);
            }
            if let Some(cause) = &snapshot.cause {
                let _ = Cause::try_from(cause.clone());
            }
        }
        Some(Body::AccountSettings(settings)) => {
            let _ = model::AccountSettings::try_from(settings);
        }
        Some(Body::AccountSettingsChanged(changed)) => {
            if let Some(settings) = changed.settings {
                let _ = model::AccountSettings::try_from(settings);
            }
            if let Some(cause) = &changed.cause {
                let _ = Cause::try_from(cause.clone());
            }
        }
        Some(Body::BucketObjects(objects)) => {
            if let Some(stats) = objects.objects {
                let _ = ObjectStats::try_from(stats);
            }
        }
        _ => {}
    }
});
