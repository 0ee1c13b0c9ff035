//! `hairpin capture` on the bridge's side: the port looked up and the request checked
//! before the capture thread ([`crate::control::capture`]) takes the connection.
use super::{Bridge, BridgeError, refused};
use crate::control::{
    capture::{MAX_CAPTURES, Plan},
    clients::Handover,
    protocol::CaptureRequest,
};

impl Bridge {
    /// Checks `request` and returns what begins it on the client's connection once the
    /// client is answered; refused (with the reason) for a port that is not attached,
    /// a bad filter or snap length, or too many captures.
    pub fn capture(&self, request: &CaptureRequest) -> Result<Handover, BridgeError> {
        let name = &request.port;
        let id = self
            .find(name)
            .ok_or_else(|| refused(format!("{name} is not a port of this bridge")))?;
        if self.slot(id).attached.is_none() {
            return Err(refused(format!(
                "{name} has no interface now: nothing to capture until it comes back"
            )));
        }
        if self.captures.running() >= MAX_CAPTURES {
            return Err(refused(format!(
                "{MAX_CAPTURES} captures are running already: stop one first"
            )));
        }
        let plan = Plan::new(id, name, request).map_err(refused)?;
        Ok(self.captures.handover(plan))
    }
}
