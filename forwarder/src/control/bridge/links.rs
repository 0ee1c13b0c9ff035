//! Following the kernel: link and address changes (a port's device going away, coming
//! back, changing its MTU or carrier), the host's addresses on the uplink, and the
//! bridge's periodic chores (aging, the fast path's egress devices).
use super::{Admission, Bridge, BridgeError, Origin};
use crate::{
    control::netlink::{Change, Link},
    switch::PortId,
};

impl Bridge {
    /// The descriptor that is readable when the kernel's links or addresses changed.
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.netlink.events_fd()
    }

    /// Housekeeping, a few times a second and whenever the kernel reports a change:
    /// follows links and addresses, and ages the MAC table.
    pub fn tick(&mut self) {
        match self.netlink.changes() {
            Ok(changes) => {
                for change in changes {
                    self.follow(change);
                }
            }
            Err(e) => tracing::warn!("reading link changes: {e}"),
        }
        self.follow_fast_egress();
        let aged = self.fdb.age(self.now(), self.config.fdb_max_age);
        if aged > 0 {
            tracing::debug!("aged out {aged} MAC table entries");
        }
    }

    fn follow(&mut self, change: Change) {
        match change {
            Change::LinkGone { ifindex, name } => {
                if let Some(id) = self.find_ifindex(ifindex) {
                    self.lose(
                        id,
                        &format!("{name} is gone (deleted, or moved to another namespace)"),
                    );
                }
            }
            Change::Link(link) => self.link_changed(&link),
            Change::Addresses { ifindex } => {
                if self.host.as_ref().is_some_and(|h| h.ifindex == ifindex)
                    && let Err(e) = self.refresh_host_addresses()
                {
                    tracing::warn!("following the host's addresses: {e}");
                }
            }
            Change::Overrun => self.resync(),
        }
    }

    /// After lost notifications: compares every port with a fresh dump.
    fn resync(&mut self) {
        tracing::warn!("the kernel dropped link notifications: re-reading every link");
        let links = match self.netlink.links() {
            Ok(links) => links,
            Err(e) => return tracing::warn!("re-reading links: {e}"),
        };
        let attached: Vec<(PortId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as PortId, s.as_ref()?.attached.as_ref()?.iface.ifindex)))
            .collect();
        for (id, ifindex) in attached {
            if !links.iter().any(|l| l.ifindex == ifindex) {
                let name = self.slot(id).config.name.clone();
                self.lose(id, &format!("{name} is gone"));
            }
        }
        for link in &links {
            self.link_changed(link);
        }
        if let Err(e) = self.refresh_host_addresses() {
            tracing::warn!("following the host's addresses: {e}");
        }
    }

    /// Port `id`'s interface went away: detached; a configuration port waits for it to
    /// come back, a run-time one is forgotten.
    fn lose(&mut self, id: PortId, why: &str) {
        let runtime = self.slot(id).origin == Origin::Runtime;
        self.detach_keeping(id, !runtime);
        if runtime {
            self.forget(id);
            tracing::warn!("{why}: port removed");
        } else {
            tracing::warn!("{why}: port detached; it is attached again when it comes back");
        }
    }

    fn link_changed(&mut self, link: &Link) {
        if let Some(id) = self.find_ifindex(link.ifindex) {
            let name = self.slot(id).config.name.clone();
            let attached = self
                .slot_mut(id)
                .attached
                .as_mut()
                .expect("found by ifindex");
            let (was_up, old_mtu) = (attached.oper_up, attached.mtu);
            attached.oper_up = link.oper_up;
            attached.mtu = link.mtu;
            // Not every link notification carries the alias: one without keeps it.
            if link.alias.is_some() {
                attached.alias.clone_from(&link.alias);
            }
            if was_up != link.oper_up {
                if let Err(e) = self.publish() {
                    tracing::error!("{name}: {e}");
                }
                if link.oper_up {
                    tracing::info!("{name}: carrier back: forwarding to it again");
                } else {
                    // Its stations' entries stay: their frames are dropped and counted
                    // at once (not flooded to every other tenant, not queued until the
                    // carrier is back); a station that moved is learned again from its
                    // first frame elsewhere, and the rest age out.
                    tracing::warn!("{name}: no carrier: frames for it are dropped (port_down)");
                }
            }
            if old_mtu != link.mtu {
                tracing::info!("{name}: MTU {old_mtu} -> {}", link.mtu);
                self.check_mtu(id, link.mtu);
                // The workers cut frames by it, the fast path leaves longer ones to them.
                if let Err(e) = self.datapath.set_mtu(id, link.mtu) {
                    tracing::error!("{name}: {e}");
                }
                if let Err(e) = self.publish() {
                    tracing::error!("{name}: {e}");
                }
            }
        } else if let Some(id) = self.find(&link.name)
            && self.slot(id).attached.is_none()
        {
            match self.kernel.lookup(&link.name) {
                // Admitted when it was added: back, it is not refused for frames a
                // neighbour grew into meanwhile (its quota is promised past the budget,
                // and no port grows until the promises fit again).
                Ok(iface) => match self.attach(id, iface, Admission::Skip) {
                    Ok(()) => tracing::info!("{}: back: attached again", link.name),
                    Err(e) => tracing::warn!("{}: back, but attaching it failed: {e}", link.name),
                },
                Err(e) => tracing::warn!("{}: back, but {e}", link.name),
            }
        }
    }

    /// Reads the uplink's addresses and updates the XDP program's lists to match (a DHCP
    /// renewal or an operator's `ip addr add` is seen at once).
    pub(super) fn refresh_host_addresses(&mut self) -> Result<(), BridgeError> {
        let Some(host) = &mut self.host else {
            return Ok(());
        };
        let now = self
            .netlink
            .addresses(host.ifindex)
            .map_err(BridgeError::Netlink)?;
        for addr in now.iter().filter(|a| !host.current.contains(a)) {
            self.steering.add_host_address(*addr)?;
            if !host.current.is_empty() {
                tracing::info!("uplink: host address {addr} added");
            }
        }
        for addr in host.current.iter().filter(|a| !now.contains(a)) {
            self.steering.remove_host_address(*addr)?;
            tracing::info!("uplink: host address {addr} removed");
        }
        host.current = now;
        Ok(())
    }
}
