//! The initiator → target direction as one type: the session decodes every PDU it reads into a
//! [`Request`] and matches on it. SNACK (§11.16) and Async Message (§11.9) have no codec: we
//! never negotiate ErrorRecoveryLevel > 0 and never send asynchronous events.

use super::bhs::RawPdu;
use super::data::DataOut;
use super::error::PduError;
use super::login::LoginRequest;
use super::logout::LogoutRequest;
use super::nop::NopOut;
use super::opcode;
use super::scsi::ScsiCommand;
use super::task_management::TaskMgmtRequest;
use super::text::TextRequest;

/// Every PDU an initiator may send, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    /// SNACK needs ErrorRecoveryLevel > 0, which we never negotiate; kept to be rejected politely.
    Snack,
}

impl Request {
    pub fn from_raw(raw: &RawPdu) -> Result<Self, PduError> {
        Ok(match raw.opcode() {
            opcode::NOP_OUT => Request::NopOut(NopOut::from_raw(raw)?),
            opcode::SCSI_COMMAND => Request::ScsiCommand(ScsiCommand::from_raw(raw)?),
            opcode::TASK_MGMT_REQUEST => Request::TaskMgmt(TaskMgmtRequest::from_raw(raw)?),
            opcode::LOGIN_REQUEST => Request::Login(LoginRequest::from_raw(raw)?),
            opcode::TEXT_REQUEST => Request::Text(TextRequest::from_raw(raw)?),
            opcode::DATA_OUT => Request::DataOut(DataOut::from_raw(raw)?),
            opcode::LOGOUT_REQUEST => Request::Logout(LogoutRequest::from_raw(raw)?),
            opcode::SNACK_REQUEST => Request::Snack,
            other => return Err(PduError::UnknownOpcode(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::strategies::data;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any header, AHS and data decode to a value or an error, never a panic.
        #[test]
        fn request_decoder_is_total(bhs: [u8; 32], tail: [u8; 16],
            ahs in proptest::collection::vec(any::<u8>(), 0..64), data in data()) {
            let mut raw = RawPdu::default();
            raw.bhs[..32].copy_from_slice(&bhs);
            raw.bhs[32..].copy_from_slice(&tail);
            raw.ahs = ahs;
            raw.data = data;
            let _ = Request::from_raw(&raw);
        }
    }
}
