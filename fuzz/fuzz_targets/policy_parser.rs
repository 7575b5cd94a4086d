//! The policy parser on arbitrary bytes: it returns a policy or a `PolicyError`, never
//! panics, and stays within the parser's depth limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = estate_policy::parse_policy(text) {
            // Every parsed policy can be evaluated against a plain request.
            let request = estate_policy::Request {
                principal: estate_policy::Principal::Anonymous,
                action: "s3:GetObject".into(),
                resource: "arn:aws:s3:::example-bucket/k".into(),
                context: Default::default(),
            };
            let _ = estate_policy::evaluate(&policy, &request);
        }
    }
});
