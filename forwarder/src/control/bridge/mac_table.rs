//! The MAC table as the operator administers it: static entries added and removed,
//! entries flushed and listed.
use super::{Bridge, BridgeError, refused};
use crate::{
    control::protocol::FdbEntry,
    switch::{PortId, VlanId, fdb::Learned, vlan},
    wire::Mac,
};

impl Bridge {
    /// A static entry for `mac` on port `name`, in `vlan` or every VLAN of the port.
    pub fn fdb_add(
        &mut self,
        name: &str,
        mac: Mac,
        vlan: Option<u32>,
    ) -> Result<String, BridgeError> {
        let id = self
            .find(name)
            .ok_or_else(|| refused(format!("{name} is not a port of this bridge")))?;
        if !mac.is_learnable() {
            return Err(refused(format!(
                "{mac} is not a station's MAC (multicast or all-zero)"
            )));
        }
        let carried = self.vlans_of(id);
        let vids = match vlan {
            Some(v) => {
                let vid = self.check_vlan(v)?;
                if !carried.contains(&vid) {
                    return Err(refused(format!("{name} does not carry VLAN {v}")));
                }
                vec![vid]
            }
            None => carried,
        };
        for &vid in &vids {
            if let Some(other) = self.static_owner(vid, mac).filter(|&p| p != id) {
                return Err(refused(format!(
                    "{mac} is already static on port {} : one station lives on one port",
                    self.slot(other).config.name
                )));
            }
        }
        for &vid in &vids {
            if self.fdb.insert_static(vid, mac, id) == Learned::Full {
                return Err(refused(format!(
                    "{mac}: its MAC table bucket is full; raise the table size"
                )));
            }
        }
        Ok(format!("{mac} static on {name} in {} VLAN(s)", vids.len()))
    }

    fn static_owner(&self, vid: VlanId, mac: Mac) -> Option<PortId> {
        self.fdb
            .entries()
            .into_iter()
            .find(|e| e.is_static && e.vlan == vid && e.mac == mac)
            .map(|e| e.port)
    }

    fn check_vlan(&self, v: u32) -> Result<VlanId, BridgeError> {
        if !self.tables.vlans.is_aware() {
            return Err(refused(format!(
                "VLAN {v}: this bridge is not VLAN-aware (no port has a VLAN setting)"
            )));
        }
        vlan::check(v).map_err(|e| refused(e.to_string()))
    }

    /// Removes `mac`'s entry in `vlan` (by default in every VLAN).
    pub fn fdb_del(&mut self, mac: Mac, vlan: Option<u32>) -> Result<String, BridgeError> {
        let removed = match vlan {
            Some(v) => usize::from(self.fdb.remove(self.check_vlan(v)?, mac)),
            None => self.fdb.remove_mac(mac),
        };
        if removed == 0 {
            return Err(refused(format!("{mac} is not in the MAC table")));
        }
        Ok(format!(
            "{mac}: {removed} entr{} removed",
            if removed == 1 { "y" } else { "ies" }
        ))
    }

    /// Forgets learned entries, of port `name` or all.
    pub fn fdb_flush(&mut self, name: Option<&str>) -> Result<String, BridgeError> {
        let port = match name {
            Some(n) => Some(
                self.find(n)
                    .ok_or_else(|| refused(format!("{n} is not a port of this bridge")))?,
            ),
            None => None,
        };
        let n = self.fdb.flush(port);
        Ok(format!(
            "{n} learned entr{} flushed",
            if n == 1 { "y" } else { "ies" }
        ))
    }

    /// The MAC table, optionally of one port and one VLAN.
    pub fn fdb_entries(
        &self,
        port: Option<&str>,
        vlan: Option<u32>,
    ) -> Result<Vec<FdbEntry>, BridgeError> {
        let port = match port {
            Some(n) => Some(
                self.find(n)
                    .ok_or_else(|| refused(format!("{n} is not a port of this bridge")))?,
            ),
            None => None,
        };
        if let Some(v) = vlan {
            vlan::check(v).map_err(|e| refused(e.to_string()))?;
        }
        let now = self.now();
        let mut entries: Vec<FdbEntry> = self
            .fdb
            .entries()
            .into_iter()
            .filter(|e| port.is_none_or(|p| e.port == p))
            .filter(|e| vlan.is_none_or(|v| u32::from(e.vlan) == v))
            .filter_map(|e| {
                let slot = self.slots.get(usize::from(e.port))?.as_ref()?;
                Some(FdbEntry {
                    mac: e.mac.to_string(),
                    vlan: e.vlan,
                    port: slot.config.name.clone(),
                    age: if e.is_static {
                        0
                    } else {
                        now.saturating_sub(e.stamp)
                    },
                    is_static: e.is_static,
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
        Ok(entries)
    }
}
