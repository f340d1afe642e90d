//! Login (RFC 7143 §6.3, §11.12–13): a pure state machine from Login Requests to Login
//! Responses. It decides stage transitions, authentication and the negotiated parameters; the
//! session stamps sequence numbers and does the I/O.

pub mod chap;
pub mod negotiation;

use crate::pdu::{LoginRequest, LoginResponse, Stage, encode_keys, parse_keys};
use chap::{Challenge, ChapCredentials};
use negotiation::{SessionParams, TargetLimits};

/// Login status classes and details (RFC 7143 §11.13.5). The table is kept whole: not every
/// code is one this target sends.
#[allow(dead_code)]
pub mod status {
    pub const SUCCESS: (u8, u8) = (0, 0);
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0);
    pub const AUTHENTICATION_FAILURE: (u8, u8) = (2, 1);
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (2, 2);
    pub const NOT_FOUND: (u8, u8) = (2, 3);
    pub const MISSING_PARAMETER: (u8, u8) = (2, 7);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 5);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (2, 10);
    pub const INVALID_REQUEST_DURING_LOGIN: (u8, u8) = (2, 11);
}

/// What the login needs to know about the targets: who exists and how they authenticate.
pub trait Directory {
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Lookup;
    /// CHAP for discovery sessions, if required.
    fn discovery_chap(&self) -> Option<Authentication>;
}

/// Authentication an export requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The initiator must prove it knows this.
    pub initiator: ChapCredentials,
    /// For mutual CHAP: what the target answers the initiator's challenge with.
    pub target: Option<ChapCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Option<Authentication>),
    NotFound,
    /// The export exists but this initiator is not on its access list.
    Forbidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Discovery,
    Normal,
}

/// A completed login.
#[derive(Debug, Clone)]
pub struct Established {
    pub session_type: SessionType,
    pub initiator_name: String,
    /// Empty for discovery sessions.
    pub target_name: String,
    pub isid: [u8; 6],
    pub params: SessionParams,
}

/// The result of one login step.
#[derive(Debug)]
pub enum Step {
    /// Send this response and wait for the next request.
    Continue(LoginResponse),
    /// Send this response; the session is now in the full-feature phase.
    Complete(LoginResponse, Box<Established>),
    /// Send this response (non-zero status) and close the connection.
    Fail(LoginResponse, String),
}

enum Chap {
    NotStarted,
    /// We offered CHAP and wait for CHAP_A.
    AwaitAlgorithm,
    /// We sent a challenge and wait for CHAP_N / CHAP_R.
    AwaitResponse(Challenge),
    Done,
}

/// Login state for one connection.
pub struct Login {
    limits: TargetLimits,
    tsih: u16,
    stage: Option<Stage>,
    params: SessionParams,
    initiator_name: Option<String>,
    target_name: Option<String>,
    session_type: SessionType,
    auth: Option<Authentication>,
    chap: Chap,
    /// Text received with C=1, waiting for the rest.
    partial: Vec<u8>,
    declared_limits: bool,
}

impl Login {
    /// `tsih` is the session handle this login will get if it succeeds.
    pub fn new(limits: TargetLimits, tsih: u16) -> Self {
        let params = SessionParams::defaults(&limits);
        Self {
            limits,
            tsih,
            stage: None,
            params,
            initiator_name: None,
            target_name: None,
            session_type: SessionType::Normal,
            auth: None,
            chap: Chap::NotStarted,
            partial: Vec::new(),
            declared_limits: false,
        }
    }

    pub fn step(&mut self, req: &LoginRequest, dir: &dyn Directory) -> Step {
        let mut resp = LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: req.csg,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: 0,
            itt: req.itt,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            status_class: 0,
            status_detail: 0,
            data: Vec::new(),
        };
        match self.step_inner(req, dir, &mut resp) {
            Ok(true) => {
                let established = Established {
                    session_type: self.session_type,
                    initiator_name: self.initiator_name.clone().unwrap_or_default(),
                    target_name: self.target_name.clone().unwrap_or_default(),
                    isid: req.isid,
                    params: self.params.clone(),
                };
                resp.tsih = self.tsih;
                Step::Complete(resp, Box::new(established))
            }
            Ok(false) => Step::Continue(resp),
            Err(((class, detail), reason)) => {
                resp.transit = false;
                resp.data.clear();
                resp.status_class = class;
                resp.status_detail = detail;
                Step::Fail(resp, reason)
            }
        }
    }

    /// Ok(true) when the login is complete.
    fn step_inner(
        &mut self,
        req: &LoginRequest,
        dir: &dyn Directory,
        resp: &mut LoginResponse,
    ) -> Result<bool, ((u8, u8), String)> {
        if req.version_min > 0 {
            return Err((
                status::UNSUPPORTED_VERSION,
                format!("version {} not supported", req.version_min),
            ));
        }
        if req.tsih != 0 {
            return Err((
                status::SESSION_DOES_NOT_EXIST,
                "adding connections to a session is not supported".into(),
            ));
        }
        if let Some(stage) = self.stage
            && req.csg != stage
        {
            return Err((
                status::INITIATOR_ERROR,
                format!("login stage {:?} out of order", req.csg),
            ));
        }
        if req.csg == Stage::FullFeature || (req.transit && req.nsg <= req.csg) {
            return Err((status::INITIATOR_ERROR, "invalid stage transition".into()));
        }
        self.stage = Some(req.csg);
        if req.cont {
            // The initiator's text continues in the next PDU; acknowledge with an empty response.
            self.partial.extend_from_slice(&req.data);
            if self.partial.len() > 64 * 1024 {
                return Err((status::INITIATOR_ERROR, "login text too long".into()));
            }
            return Ok(false);
        }
        let mut text = std::mem::take(&mut self.partial);
        text.extend_from_slice(&req.data);
        let keys = parse_keys(&text).map_err(|e| (status::INITIATOR_ERROR, e.to_string()))?;
        let first = self.initiator_name.is_none();
        let mut answers: Vec<(String, String)> = Vec::new();
        let mut chap_keys: Vec<(String, String)> = Vec::new();
        let mut auth_methods: Option<String> = None;

        for (k, v) in &keys {
            match k.as_str() {
                "InitiatorName" => self.initiator_name = Some(v.clone()),
                "TargetName" => self.target_name = Some(v.clone()),
                "SessionType" => {
                    self.session_type = match v.as_str() {
                        "Discovery" => SessionType::Discovery,
                        "Normal" => SessionType::Normal,
                        _ => {
                            return Err((
                                status::INITIATOR_ERROR,
                                format!("unknown SessionType {v}"),
                            ));
                        }
                    }
                }
                "AuthMethod" => auth_methods = Some(v.clone()),
                k if k.starts_with("CHAP_") => chap_keys.push((k.to_string(), v.clone())),
                _ => {}
            }
        }
        if first {
            let initiator = self.initiator_name.clone().ok_or((
                status::MISSING_PARAMETER,
                "InitiatorName missing".to_string(),
            ))?;
            self.auth = match self.session_type {
                SessionType::Discovery => dir.discovery_chap(),
                SessionType::Normal => {
                    let target = self
                        .target_name
                        .clone()
                        .ok_or((status::MISSING_PARAMETER, "TargetName missing".to_string()))?;
                    match dir.lookup(&target, &initiator) {
                        Lookup::Found(auth) => auth,
                        Lookup::NotFound => {
                            return Err((status::NOT_FOUND, format!("no target named {target}")));
                        }
                        Lookup::Forbidden => {
                            return Err((
                                status::AUTHORIZATION_FAILURE,
                                format!("{initiator} may not log in to {target}"),
                            ));
                        }
                    }
                }
            };
            if self.session_type == SessionType::Normal {
                answers.push(("TargetPortalGroupTag".into(), "1".into()));
            }
        }
        for (k, v) in &keys {
            if matches!(
                k.as_str(),
                "InitiatorName" | "TargetName" | "SessionType" | "AuthMethod"
            ) || k.starts_with("CHAP_")
            {
                continue;
            }
            let discovery = self.session_type == SessionType::Discovery;
            match negotiation::negotiate(k, v, &mut self.params, &self.limits, discovery) {
                Ok(Some(a)) => answers.push((k.clone(), a)),
                Ok(None) => {}
                Err(reason) => return Err((status::INITIATOR_ERROR, reason)),
            }
        }

        let mut authenticated = self.auth.is_none() || matches!(self.chap, Chap::Done);
        if req.csg == Stage::Security {
            if let Some(methods) = &auth_methods {
                let offered: Vec<&str> = methods.split(',').collect();
                let pick = if self.auth.is_some() { "CHAP" } else { "None" };
                if offered.contains(&pick) {
                    answers.push(("AuthMethod".into(), pick.into()));
                    if pick == "CHAP" {
                        self.chap = Chap::AwaitAlgorithm;
                    }
                } else {
                    answers.push(("AuthMethod".into(), "Reject".into()));
                    return Err((
                        status::AUTHENTICATION_FAILURE,
                        format!("AuthMethod {methods} not acceptable"),
                    ));
                }
            }
            if let Some(auth) = self.auth.clone() {
                authenticated = self.chap_step(&auth, &chap_keys, &mut answers)?;
            }
        } else if !authenticated {
            return Err((
                status::AUTHENTICATION_FAILURE,
                "authentication required".into(),
            ));
        }

        let leaving_for_operational_or_ffp = req.transit && authenticated;
        // Declared in the operational stage only: open-iscsi hands every key it does not
        // know in a security-stage response to its CHAP code and fails the login. An
        // initiator that skips the stage sends us at most the default 8192 bytes a PDU.
        if req.csg == Stage::Operational && !self.declared_limits {
            answers.push((
                "MaxRecvDataSegmentLength".into(),
                self.limits.max_recv_data_segment_length.to_string(),
            ));
            self.declared_limits = true;
        }
        resp.data = encode_keys(&answers);
        if leaving_for_operational_or_ffp {
            resp.transit = true;
            resp.nsg = req.nsg;
            self.stage = Some(req.nsg);
            return Ok(req.nsg == Stage::FullFeature);
        }
        Ok(false)
    }

    /// Advances CHAP with this PDU's CHAP_* keys; true once the initiator is authenticated.
    fn chap_step(
        &mut self,
        auth: &Authentication,
        keys: &[(String, String)],
        answers: &mut Vec<(String, String)>,
    ) -> Result<bool, ((u8, u8), String)> {
        let get = |name: &str| {
            keys.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let fail = |why: &str| Err((status::AUTHENTICATION_FAILURE, why.to_string()));
        match std::mem::replace(&mut self.chap, Chap::NotStarted) {
            Chap::NotStarted => {
                self.chap = Chap::NotStarted;
                Ok(false)
            }
            Chap::AwaitAlgorithm => {
                let Some(algs) = get("CHAP_A") else {
                    self.chap = Chap::AwaitAlgorithm;
                    return Ok(false);
                };
                if !algs.split(',').any(|a| a == chap::ALGORITHM_MD5) {
                    answers.push(("CHAP_A".into(), "Reject".into()));
                    return fail("no supported CHAP algorithm offered");
                }
                let c = Challenge::random();
                answers.push(("CHAP_A".into(), chap::ALGORITHM_MD5.into()));
                answers.push(("CHAP_I".into(), c.id.to_string()));
                answers.push(("CHAP_C".into(), chap::encode_hex(&c.challenge)));
                self.chap = Chap::AwaitResponse(c);
                Ok(false)
            }
            Chap::AwaitResponse(c) => {
                let (Some(name), Some(resp)) = (get("CHAP_N"), get("CHAP_R")) else {
                    return fail("CHAP_N and CHAP_R expected");
                };
                let expected = chap::response(c.id, auth.initiator.secret.as_bytes(), &c.challenge);
                if name != auth.initiator.user
                    || chap::decode_binary(resp).as_deref() != Some(&expected[..])
                {
                    return fail("CHAP response does not match");
                }
                if let (Some(id), Some(challenge)) = (get("CHAP_I"), get("CHAP_C")) {
                    let Some(target) = &auth.target else {
                        return fail("mutual CHAP requested but not configured");
                    };
                    let id: u8 = id
                        .parse()
                        .map_err(|_| (status::AUTHENTICATION_FAILURE, "bad CHAP_I".to_string()))?;
                    let challenge = chap::decode_binary(challenge)
                        .ok_or((status::AUTHENTICATION_FAILURE, "bad CHAP_C".to_string()))?;
                    if challenge == c.challenge {
                        return fail("initiator reflected our challenge");
                    }
                    let r = chap::response(id, target.secret.as_bytes(), &challenge);
                    answers.push(("CHAP_N".into(), target.user.clone()));
                    answers.push(("CHAP_R".into(), chap::encode_hex(&r)));
                }
                self.chap = Chap::Done;
                Ok(true)
            }
            Chap::Done => {
                self.chap = Chap::Done;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(Option<Authentication>);
    impl Directory for Dir {
        fn lookup(&self, target: &str, _: &str) -> Lookup {
            if target == "iqn.t" {
                Lookup::Found(self.0.clone())
            } else {
                Lookup::NotFound
            }
        }
        fn discovery_chap(&self) -> Option<Authentication> {
            None
        }
    }

    fn req(csg: Stage, nsg: Stage, transit: bool, keys: &[(&str, &str)]) -> LoginRequest {
        LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0, 0, 1],
            tsih: 0,
            itt: 1,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data: encode_keys(keys),
        }
    }

    fn keys_of(r: &LoginResponse) -> Vec<(String, String)> {
        parse_keys(&r.data).unwrap()
    }

    #[test]
    fn plain_login_through_both_stages() {
        let dir = Dir(None);
        let mut l = Login::new(TargetLimits::default(), 7);
        let s = l.step(
            &req(
                Stage::Security,
                Stage::Operational,
                true,
                &[
                    ("InitiatorName", "iqn.i"),
                    ("TargetName", "iqn.t"),
                    ("AuthMethod", "None"),
                ],
            ),
            &dir,
        );
        let Step::Continue(r) = s else {
            panic!("{s:?}")
        };
        assert!(r.transit);
        assert!(keys_of(&r).contains(&("AuthMethod".into(), "None".into())));
        let s = l.step(
            &req(
                Stage::Operational,
                Stage::FullFeature,
                true,
                &[("HeaderDigest", "CRC32C,None")],
            ),
            &dir,
        );
        let Step::Complete(r, est) = s else {
            panic!("{s:?}")
        };
        assert_eq!(r.tsih, 7);
        assert!(est.params.header_digest);
        assert!(
            keys_of(&r)
                .iter()
                .any(|(k, _)| k == "MaxRecvDataSegmentLength")
        );
    }

    #[test]
    fn unknown_target_is_not_found() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let s = l.step(
            &req(
                Stage::Operational,
                Stage::FullFeature,
                true,
                &[("InitiatorName", "i"), ("TargetName", "nope")],
            ),
            &Dir(None),
        );
        let Step::Fail(r, _) = s else { panic!() };
        assert_eq!((r.status_class, r.status_detail), status::NOT_FOUND);
    }

    #[test]
    fn chap_accepts_right_secret_and_rejects_wrong() {
        for (secret, ok) in [("s3cret-secret", true), ("wrong", false)] {
            let auth = Authentication {
                initiator: ChapCredentials {
                    user: "u".into(),
                    secret: "s3cret-secret".into(),
                },
                target: None,
            };
            let dir = Dir(Some(auth));
            let mut l = Login::new(TargetLimits::default(), 1);
            let Step::Continue(r) = l.step(
                &req(
                    Stage::Security,
                    Stage::Operational,
                    true,
                    &[
                        ("InitiatorName", "i"),
                        ("TargetName", "iqn.t"),
                        ("AuthMethod", "CHAP,None"),
                    ],
                ),
                &dir,
            ) else {
                panic!()
            };
            assert!(!r.transit);
            assert!(keys_of(&r).contains(&("AuthMethod".into(), "CHAP".into())));
            let Step::Continue(r) = l.step(
                &req(
                    Stage::Security,
                    Stage::Operational,
                    false,
                    &[("CHAP_A", "5")],
                ),
                &dir,
            ) else {
                panic!()
            };
            let k = keys_of(&r);
            let id: u8 = k
                .iter()
                .find(|(k, _)| k == "CHAP_I")
                .unwrap()
                .1
                .parse()
                .unwrap();
            let c = chap::decode_binary(&k.iter().find(|(k, _)| k == "CHAP_C").unwrap().1).unwrap();
            let answer = chap::encode_hex(&chap::response(id, secret.as_bytes(), &c));
            let s = l.step(
                &req(
                    Stage::Security,
                    Stage::Operational,
                    true,
                    &[("CHAP_N", "u"), ("CHAP_R", &answer)],
                ),
                &dir,
            );
            match (s, ok) {
                (Step::Continue(r), true) => assert!(r.transit),
                (Step::Fail(r, _), false) => assert_eq!(
                    (r.status_class, r.status_detail),
                    status::AUTHENTICATION_FAILURE
                ),
                (s, _) => panic!("{s:?}"),
            }
        }
    }

    /// open-iscsi 2.1's SendTargets discovery login without CHAP, captured from
    /// `iscsiadm -m discovery -t st -p …` in the test guest (the target's debug log): one
    /// operational-stage PDU straight to full feature. Our answer must be what that
    /// initiator accepts: every key it offered answered, ErrorRecoveryLevel exactly `0`.
    #[test]
    fn golden_open_iscsi_discovery_login_without_chap() {
        let offered = [
            ("InitiatorName", "iqn.2026-11.io.blockdelta:guest"),
            ("InitiatorAlias", "(none)"),
            ("SessionType", "Discovery"),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "32768"),
        ];
        let mut l = Login::new(TargetLimits::default(), 3);
        let s = l.step(
            &req(Stage::Operational, Stage::FullFeature, true, &offered),
            &Dir(None),
        );
        let Step::Complete(r, est) = s else {
            panic!("{s:?}")
        };
        assert_eq!(est.session_type, SessionType::Discovery);
        assert_eq!(est.params.initiator_max_recv_data_segment_length, 32768);
        let answer: Vec<(String, String)> = keys_of(&r);
        let want: Vec<(String, String)> = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "262144"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(answer, want);
    }

    /// The same discovery with `discovery.sendtargets.auth.authmethod = CHAP`, keys in the
    /// order open-iscsi's login code sends them: security stage (AuthMethod, then CHAP_A,
    /// then CHAP_N/CHAP_R), then the operational keys above. No key open-iscsi's security
    /// stage would choke on comes back before the operational stage.
    #[test]
    fn golden_open_iscsi_discovery_login_with_chap() {
        struct Discovery(Authentication);
        impl Directory for Discovery {
            fn lookup(&self, _: &str, _: &str) -> Lookup {
                Lookup::NotFound
            }
            fn discovery_chap(&self) -> Option<Authentication> {
                Some(self.0.clone())
            }
        }
        let dir = Discovery(Authentication {
            initiator: ChapCredentials {
                user: "discovery".into(),
                secret: "disc-secret-0123".into(),
            },
            target: None,
        });
        let mut l = Login::new(TargetLimits::default(), 4);
        let Step::Continue(r) = l.step(
            &req(
                Stage::Security,
                Stage::Operational,
                true,
                &[
                    ("InitiatorName", "iqn.2026-11.io.blockdelta:guest"),
                    ("InitiatorAlias", "(none)"),
                    ("SessionType", "Discovery"),
                    ("AuthMethod", "CHAP,None"),
                ],
            ),
            &dir,
        ) else {
            panic!()
        };
        assert!(!r.transit);
        assert_eq!(keys_of(&r), vec![("AuthMethod".into(), "CHAP".into())]);
        let Step::Continue(r) = l.step(
            &req(
                Stage::Security,
                Stage::Operational,
                true,
                &[("CHAP_A", "5")],
            ),
            &dir,
        ) else {
            panic!()
        };
        let k = keys_of(&r);
        let names: Vec<&str> = k.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["CHAP_A", "CHAP_I", "CHAP_C"]);
        let id: u8 = k[1].1.parse().unwrap();
        let c = chap::decode_binary(&k[2].1).unwrap();
        let answer = chap::encode_hex(&chap::response(id, b"disc-secret-0123", &c));
        let Step::Continue(r) = l.step(
            &req(
                Stage::Security,
                Stage::Operational,
                true,
                &[("CHAP_N", "discovery"), ("CHAP_R", &answer)],
            ),
            &dir,
        ) else {
            panic!()
        };
        assert!(r.transit);
        assert!(keys_of(&r).is_empty(), "{:?}", keys_of(&r));
        let s = l.step(
            &req(
                Stage::Operational,
                Stage::FullFeature,
                true,
                &[
                    ("HeaderDigest", "None"),
                    ("DataDigest", "None"),
                    ("DefaultTime2Wait", "2"),
                    ("DefaultTime2Retain", "0"),
                    ("IFMarker", "No"),
                    ("OFMarker", "No"),
                    ("ErrorRecoveryLevel", "0"),
                    ("MaxRecvDataSegmentLength", "32768"),
                ],
            ),
            &dir,
        );
        let Step::Complete(r, _) = s else {
            panic!("{s:?}")
        };
        assert!(keys_of(&r).contains(&("ErrorRecoveryLevel".into(), "0".into())));
        assert!(!keys_of(&r).iter().any(|(_, v)| v == "Irrelevant"));
    }

    #[test]
    fn skipping_security_when_chap_is_required_fails() {
        let auth = Authentication {
            initiator: ChapCredentials {
                user: "u".into(),
                secret: "x".into(),
            },
            target: None,
        };
        let mut l = Login::new(TargetLimits::default(), 1);
        let s = l.step(
            &req(
                Stage::Operational,
                Stage::FullFeature,
                true,
                &[("InitiatorName", "i"), ("TargetName", "iqn.t")],
            ),
            &Dir(Some(auth)),
        );
        assert!(matches!(s, Step::Fail(..)));
    }
}
