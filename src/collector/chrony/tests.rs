//! Tests of the chrony collector's mapping, on decoded replies.

use super::report::*;
use crate::model::PeerState;
use crate::proto::cmdmon::{Address, SourceData, SourceMode, SourceState};

fn source(state: SourceState, reach: u16) -> SourceData {
    SourceData {
        address: Address::Inet4("192.0.2.11".parse().expect("ip")),
        poll: -2,
        stratum: 8,
        state,
        mode: SourceMode::Client,
        flags: 0,
        reachability: reach,
        since_sample: 1,
        orig_latest_meas: -11.5,
        latest_meas: -11.5,
        latest_meas_err: 0.001,
    }
}

#[test]
fn states_map_by_meaning_not_by_name() {
    let cases = [
        (SourceState::Selected, 0o377, PeerState::Selected),
        (SourceState::Unselected, 0o377, PeerState::Candidate),
        (SourceState::Selectable, 0o377, PeerState::Outlier),
        (SourceState::Falseticker, 0o377, PeerState::Falseticker),
        (SourceState::Jittery, 0o377, PeerState::Rejected),
        (SourceState::Nonselectable, 0o377, PeerState::Rejected),
        (SourceState::Nonselectable, 0, PeerState::Unreachable),
        (SourceState::Unknown(9), 0o377, PeerState::Rejected),
    ];
    for (state, reach, want) in cases {
        assert_eq!(peer_state(&source(state, reach)), want, "{state:?}");
    }
}
