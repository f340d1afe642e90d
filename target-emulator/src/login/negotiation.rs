//! Operational key negotiation (RFC 7143 §13): each key's result function (min, max, AND, OR,
//! list selection) applied to the initiator's offer and the target's preference.

/// What the target prefers or allows.
#[derive(Debug, Clone)]
pub struct TargetLimits {
    /// Our MaxRecvDataSegmentLength, declared to the initiator.
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
}

impl Default for TargetLimits {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 16 * 1024 * 1024 - 512,
            first_burst_length: 256 * 1024,
        }
    }
}

/// The operational parameters in force for a session once login completes (RFC 7143 §13
/// defaults until negotiated otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment we may send.
    pub initiator_max_recv_data_segment_length: u32,
    /// Ours: the largest data segment the initiator may send us.
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
}

impl SessionParams {
    pub fn defaults(limits: &TargetLimits) -> Self {
        Self {
            header_digest: false,
            data_digest: false,
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: limits.max_recv_data_segment_length,
            max_burst_length: 262_144.min(limits.max_burst_length),
            first_burst_length: 65_536.min(limits.first_burst_length),
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
        }
    }
}

/// The answer to one offered key: the value to send back, or nothing (declarative keys).
pub type Answer = Option<String>;

/// One operational key of RFC 7143 §13 and whether its "Irrelevant when:" line names
/// `SessionType=Discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRule {
    pub name: &'static str,
    /// The RFC section that defines it.
    pub section: &'static str,
    pub irrelevant_in_discovery: bool,
}

const fn rule(name: &'static str, section: &'static str, irrelevant: bool) -> KeyRule {
    KeyRule {
        name,
        section,
        irrelevant_in_discovery: irrelevant,
    }
}

/// Every operational key we negotiate, as RFC 7143 §13 defines its scope. A discovery
/// session answers `Irrelevant` only to the keys whose definition says "Irrelevant when:
/// SessionType=Discovery"; the rest are negotiated as in a normal session. In particular
/// ErrorRecoveryLevel, DefaultTime2Wait and DefaultTime2Retain carry no such line, and
/// open-iscsi's discovery fails the login when ErrorRecoveryLevel comes back as anything
/// but `0`.
pub const OPERATIONAL_KEYS: &[KeyRule] = &[
    rule("HeaderDigest", "13.1", false),
    rule("DataDigest", "13.1", false),
    rule("MaxConnections", "13.2", true),
    rule("InitialR2T", "13.10", true),
    rule("ImmediateData", "13.11", true),
    rule("MaxRecvDataSegmentLength", "13.12", false),
    rule("MaxBurstLength", "13.13", true),
    rule("FirstBurstLength", "13.14", true),
    rule("DefaultTime2Wait", "13.15", false),
    rule("DefaultTime2Retain", "13.16", false),
    rule("MaxOutstandingR2T", "13.17", true),
    rule("DataPDUInOrder", "13.18", true),
    rule("DataSequenceInOrder", "13.19", true),
    rule("ErrorRecoveryLevel", "13.20", false),
    rule("TaskReporting", "13.23", true),
    rule("iSCSIProtocolLevel", "13.24", true),
];

/// Whether RFC 7143 makes `key` irrelevant in a discovery session.
pub fn irrelevant_in_discovery(key: &str) -> bool {
    OPERATIONAL_KEYS
        .iter()
        .any(|r| r.name == key && r.irrelevant_in_discovery)
}

/// Parses a numerical value: decimal or `0x` hex (RFC 7143 §6.1).
fn number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yn(b: bool) -> String {
    if b { "Yes".into() } else { "No".into() }
}

/// Negotiates one operational key, updating `params`. Returns `Err` with a reason when the
/// offer is malformed (the login then fails with "initiator error").
pub fn negotiate(
    key: &str,
    value: &str,
    params: &mut SessionParams,
    limits: &TargetLimits,
    discovery: bool,
) -> Result<Answer, String> {
    if discovery && irrelevant_in_discovery(key) {
        return Ok(Some("Irrelevant".into()));
    }
    let bad = || format!("bad value {value:?} for {key}");
    let ranged = |lo: u64, hi: u64| -> Result<u64, String> {
        number(value)
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(bad)
    };
    Ok(match key {
        "HeaderDigest" | "DataDigest" => {
            // List: the first of the initiator's choices we support.
            let pick = value
                .split(',')
                .find(|c| *c == "CRC32C" || *c == "None")
                .ok_or_else(|| "no supported digest offered".to_string())?;
            let on = pick == "CRC32C";
            if key == "HeaderDigest" {
                params.header_digest = on;
            } else {
                params.data_digest = on;
            }
            Some(pick.to_string())
        }
        "MaxRecvDataSegmentLength" => {
            params.initiator_max_recv_data_segment_length = ranged(512, 16_777_215)? as u32;
            None
        }
        "MaxBurstLength" => {
            let v = ranged(512, 16_777_215)?.min(limits.max_burst_length as u64) as u32;
            params.max_burst_length = v;
            params.first_burst_length = params.first_burst_length.min(v);
            Some(v.to_string())
        }
        "FirstBurstLength" => {
            let v = ranged(512, 16_777_215)?.min(limits.first_burst_length as u64) as u32;
            params.first_burst_length = v.min(params.max_burst_length);
            Some(v.to_string())
        }
        "ImmediateData" => {
            // AND with our Yes: the initiator's choice.
            params.immediate_data = yes_no(value).ok_or_else(bad)?;
            Some(yn(params.immediate_data))
        }
        "InitialR2T" => {
            // OR with our No: the initiator's choice.
            params.initial_r2t = yes_no(value).ok_or_else(bad)?;
            Some(yn(params.initial_r2t))
        }
        "MaxOutstandingR2T" => {
            ranged(1, 65_535)?;
            params.max_outstanding_r2t = 1;
            Some("1".into())
        }
        "DataPDUInOrder" | "DataSequenceInOrder" => {
            // OR with our Yes: always Yes; we never accept out-of-order data.
            yes_no(value).ok_or_else(bad)?;
            Some("Yes".into())
        }
        "ErrorRecoveryLevel" => {
            ranged(0, 2)?;
            Some("0".into())
        }
        "MaxConnections" => {
            ranged(1, 65_535)?;
            Some("1".into())
        }
        "DefaultTime2Wait" => Some(ranged(0, 3600)?.max(2).to_string()),
        "DefaultTime2Retain" => Some(ranged(0, 3600)?.min(20).to_string()),
        "OFMarker" | "IFMarker" => Some("No".into()),
        "OFMarkInt" | "IFMarkInt" => Some("Irrelevant".into()),
        "iSCSIProtocolLevel" => Some(ranged(0, 31)?.min(1).to_string()),
        "TaskReporting" => Some("RFC3720".into()),
        // Declarative keys that need no answer.
        "InitiatorAlias" => None,
        _ => Some("NotUnderstood".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, value: &str) -> (Answer, SessionParams) {
        let limits = TargetLimits::default();
        let mut p = SessionParams::defaults(&limits);
        let a = negotiate(key, value, &mut p, &limits, false).unwrap();
        (a, p)
    }

    #[test]
    fn digest_takes_first_supported_choice() {
        assert_eq!(
            run("HeaderDigest", "CRC32C,None").0.as_deref(),
            Some("CRC32C")
        );
        assert!(run("HeaderDigest", "CRC32C,None").1.header_digest);
        assert_eq!(run("DataDigest", "None,CRC32C").0.as_deref(), Some("None"));
    }

    #[test]
    fn burst_lengths_take_the_minimum() {
        assert_eq!(
            run("MaxBurstLength", "16776192").0.as_deref(),
            Some("16776192")
        );
        assert_eq!(
            run("FirstBurstLength", "1048576").0.as_deref(),
            Some("262144")
        );
        assert_eq!(
            run("MaxRecvDataSegmentLength", "0x2000")
                .1
                .initiator_max_recv_data_segment_length,
            8192
        );
    }

    #[test]
    fn boolean_functions_follow_rfc() {
        assert_eq!(run("InitialR2T", "No").0.as_deref(), Some("No"));
        assert_eq!(run("ImmediateData", "No").0.as_deref(), Some("No"));
        assert_eq!(run("DataPDUInOrder", "No").0.as_deref(), Some("Yes"));
        assert_eq!(run("ErrorRecoveryLevel", "2").0.as_deref(), Some("0"));
    }

    /// The answer a discovery session gives to a valid offer of `key`.
    fn discovery(key: &str, value: &str) -> Answer {
        let limits = TargetLimits::default();
        let mut p = SessionParams::defaults(&limits);
        negotiate(key, value, &mut p, &limits, true).unwrap()
    }

    /// One test per key of RFC 7143 §13 in a discovery session: `Irrelevant` exactly where
    /// the key's definition says "Irrelevant when: SessionType=Discovery", the negotiated
    /// value elsewhere.
    macro_rules! discovery_key {
        ($($test:ident: $key:literal = $offer:literal => $answer:expr;)*) => {
            $(
                #[test]
                fn $test() {
                    assert_eq!(discovery($key, $offer).as_deref(), $answer, "{}", $key);
                    let rule = OPERATIONAL_KEYS.iter().find(|r| r.name == $key).unwrap();
                    assert_eq!(
                        rule.irrelevant_in_discovery,
                        $answer == Some("Irrelevant"),
                        "RFC 7143 §{}",
                        rule.section
                    );
                }
            )*
            /// Every key of the table has its test above.
            #[test]
            fn every_operational_key_has_a_discovery_test() {
                let tested = [$($key),*];
                for rule in OPERATIONAL_KEYS {
                    assert!(tested.contains(&rule.name), "{} untested", rule.name);
                }
            }
        };
    }

    discovery_key! {
        discovery_header_digest: "HeaderDigest" = "None" => Some("None");
        discovery_data_digest: "DataDigest" = "CRC32C,None" => Some("CRC32C");
        discovery_max_connections: "MaxConnections" = "1" => Some("Irrelevant");
        discovery_initial_r2t: "InitialR2T" = "Yes" => Some("Irrelevant");
        discovery_immediate_data: "ImmediateData" = "Yes" => Some("Irrelevant");
        discovery_max_recv_data_segment_length: "MaxRecvDataSegmentLength" = "32768" => None;
        discovery_max_burst_length: "MaxBurstLength" = "262144" => Some("Irrelevant");
        discovery_first_burst_length: "FirstBurstLength" = "65536" => Some("Irrelevant");
        discovery_default_time2wait: "DefaultTime2Wait" = "2" => Some("2");
        discovery_default_time2retain: "DefaultTime2Retain" = "0" => Some("0");
        discovery_max_outstanding_r2t: "MaxOutstandingR2T" = "1" => Some("Irrelevant");
        discovery_data_pdu_in_order: "DataPDUInOrder" = "Yes" => Some("Irrelevant");
        discovery_data_sequence_in_order: "DataSequenceInOrder" = "Yes" => Some("Irrelevant");
        discovery_error_recovery_level: "ErrorRecoveryLevel" = "0" => Some("0");
        discovery_task_reporting: "TaskReporting" = "RFC3720" => Some("Irrelevant");
        discovery_protocol_level: "iSCSIProtocolLevel" = "1" => Some("Irrelevant");
    }

    #[test]
    fn error_recovery_level_is_negotiated_in_discovery_too() {
        // Minimum of the offer and our 0: open-iscsi fails a login on anything but "0".
        assert_eq!(discovery("ErrorRecoveryLevel", "2").as_deref(), Some("0"));
        assert_eq!(discovery("DefaultTime2Wait", "0").as_deref(), Some("2"));
        assert_eq!(discovery("DefaultTime2Retain", "60").as_deref(), Some("20"));
    }

    #[test]
    fn unknown_and_malformed_keys() {
        assert_eq!(
            run("X-com.example.Foo", "1").0.as_deref(),
            Some("NotUnderstood")
        );
        let limits = TargetLimits::default();
        let mut p = SessionParams::defaults(&limits);
        assert!(negotiate("MaxBurstLength", "12", &mut p, &limits, false).is_err());
        assert!(negotiate("ImmediateData", "Maybe", &mut p, &limits, false).is_err());
    }
}
