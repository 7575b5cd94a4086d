//! Operations the unit tests of the read side build a membership from: an agent's hello for
//! one Region, and that Region's complete refresh.

use estate_common::model::AccountId;

use crate::state::store::Op;

/// The Region every membership test reports in.
const REGION: &str = "eu-west-1";

/// An agent of `account` says hello for [`REGION`].
pub fn hello(account: &AccountId) -> Op {
    Op::Hello {
        account_id: account.clone(),
        regions: vec![REGION.parse().expect("a Region")],
        canonical_user_id: String::new(),
        agent_version: "test".into(),
    }
}

/// `account`'s refresh `generation` of [`REGION`] completed, read at `read_at`.
pub fn scope_complete(account: &AccountId, generation: u64, read_at: i64) -> Op {
    Op::ScopeComplete {
        account_id: account.clone(),
        region: REGION.parse().expect("a Region"),
        generation,
        read_at,
        count: 0,
    }
}
