//! The macros that turn the counter tables of [`super`] into types: the atomic block a
//! worker writes, the plain snapshot the control plane sums and subtracts, and the
//! control protocol's DTO with its rows for the Prometheus exposition and `show stats`.
//!
//! Nothing here names a counter: every counter is one row of a table in `stats.rs`, and
//! each type below gets one field (or one entry) per row of the sections it takes.
//! `macro_rules!` cannot filter a list, so a table is split into sections by where a
//! counter is counted and whether it is reported, and each type names the sections it
//! takes.

/// `None` for nothing, `Some(x)` for `x`: an optional part of a table's row.
macro_rules! optional {
    () => {
        None
    };
    ($($some:tt)+) => {
        Some($($some)+)
    };
}

/// One reported row's entry in its DTO's `ROWS`: its name, how to read it, and its
/// metric and `show stats` column if it has them.
macro_rules! counter_row {
    (
        $dto:ty, $name:ident
        $(, metric($m_order:literal, $m_kind:ident, $m_name:literal, $m_help:literal))?
        $(, column($c_order:literal, $c_header:literal, $c_width:literal))?
    ) => {
        $crate::datapath::stats::CounterRow::<$dto> {
            name: stringify!($name),
            get: |c: &$dto| c.$name,
            metric: optional!($($crate::datapath::stats::Metric {
                order: $m_order,
                kind: $crate::datapath::stats::MetricKind::$m_kind,
                name: $m_name,
                help: $m_help,
            })?),
            column: optional!($($crate::datapath::stats::Column {
                order: $c_order,
                header: $c_header,
                width: $c_width,
            })?),
        }
    };
}

/// The per-port counters from their table: [`super::PortQueueCounters`],
/// [`super::PortQueueSnapshot`] (read, sum, difference) and [`super::PortCounters`]
/// (the DTO, its conversion and its `ROWS`).
///
/// A reported row is `/// doc`, optional `#[serde(...)]` attributes for the DTO's field,
/// its name, then an optional `metric(order, counter|gauge, "name", "help")` (a family
/// with a `port` label; `order` places it among the port families) and an optional
/// `column(order, "header", width)` of `show stats`. Other rows are `/// doc` and a name;
/// a kernel drop row adds its `reason` label and what it means in the log.
macro_rules! port_counters {
    (
        counted by the workers, reported {
            $(
                $(#[doc = $wr_doc:literal])*
                $(#[serde($($wr_serde:tt)*)])*
                $wr:ident
                $(metric($($wr_metric:tt)*))?
                $(column($($wr_column:tt)*))?
                ;
            )*
        }
        counted by the workers, not reported {
            $($(#[doc = $wu_doc:literal])* $wu:ident;)*
        }
        dropped by the kernel, reported as drops {
            $($(#[doc = $k_doc:literal])* $k:ident: $k_label:literal, $k_meaning:literal;)*
        }
        merged from the fast path, reported {
            $(
                $(#[doc = $fr_doc:literal])*
                $(#[serde($($fr_serde:tt)*)])*
                $fr:ident
                $(metric($($fr_metric:tt)*))?
                $(column($($fr_column:tt)*))?
                ;
            )*
        }
        merged from the fast path, not reported {
            $($(#[doc = $fu_doc:literal])* $fu:ident;)*
        }
    ) => {
        /// Counters of one port on one worker (that is, one queue of the port): the
        /// table's rows counted by the workers.
        #[derive(Debug, Default)]
        pub struct PortQueueCounters {
            $($(#[doc = $wr_doc])* pub $wr: Counter,)*
            $($(#[doc = $wu_doc])* pub $wu: Counter,)*
            /// Drops, by [`DropReason`] (indexed by its discriminant).
            pub drops: [Counter; DropReason::COUNT],
            $($(#[doc = $k_doc])* pub $k: Counter,)*
        }

        impl PortQueueCounters {
            /// Every counter but [`Self::drops`], by name.
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, &Counter)> {
                [
                    $((stringify!($wr), &self.$wr),)*
                    $((stringify!($wu), &self.$wu),)*
                    $((stringify!($k), &self.$k),)*
                ]
                .into_iter()
            }
        }

        /// A plain copy of one [`PortQueueCounters`], with what the kernel fast path
        /// counted merged in, for reports and sums: every row of the table.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct PortQueueSnapshot {
            $($(#[doc = $wr_doc])* pub $wr: u64,)*
            $($(#[doc = $wu_doc])* pub $wu: u64,)*
            /// Drops by reason, indexed by [`DropReason`]'s discriminant.
            pub drops: [u64; DropReason::COUNT],
            $($(#[doc = $k_doc])* pub $k: u64,)*
            $($(#[doc = $fr_doc])* pub $fr: u64,)*
            $($(#[doc = $fu_doc])* pub $fu: u64,)*
        }

        impl PortQueueSnapshot {
            /// Reads `c` (the fast path's counters are merged in later, [`Self::add_fast`]).
            pub fn of(c: &PortQueueCounters) -> Self {
                Self {
                    $($wr: c.$wr.get(),)*
                    $($wu: c.$wu.get(),)*
                    drops: std::array::from_fn(|i| c.drops[i].get()),
                    $($k: c.$k.get(),)*
                    ..Self::default()
                }
            }

            /// Adds `other` into `self`.
            pub fn accumulate(&mut self, other: &Self) {
                $(self.$wr += other.$wr;)*
                $(self.$wu += other.$wu;)*
                for (a, b) in self.drops.iter_mut().zip(other.drops) {
                    *a += b;
                }
                $(self.$k += other.$k;)*
                $(self.$fr += other.$fr;)*
                $(self.$fu += other.$fu;)*
            }

            /// What was counted since `base` (an earlier snapshot of the same counters).
            #[must_use]
            pub fn since(&self, base: &Self) -> Self {
                Self {
                    $($wr: self.$wr.wrapping_sub(base.$wr),)*
                    $($wu: self.$wu.wrapping_sub(base.$wu),)*
                    drops: std::array::from_fn(|i| self.drops[i].wrapping_sub(base.drops[i])),
                    $($k: self.$k.wrapping_sub(base.$k),)*
                    $($fr: self.$fr.wrapping_sub(base.$fr),)*
                    $($fu: self.$fu.wrapping_sub(base.$fu),)*
                }
            }

            /// Every value but [`Self::drops`], by name.
            pub fn values(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [
                    $((stringify!($wr), self.$wr),)*
                    $((stringify!($wu), self.$wu),)*
                    $((stringify!($k), self.$k),)*
                    $((stringify!($fr), self.$fr),)*
                    $((stringify!($fu), self.$fu),)*
                ]
                .into_iter()
            }

            /// The kernel's drops, by the names `show stats` gives them.
            pub fn socket_drop_counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($k), self.$k),)*].into_iter()
            }
        }

        /// The kernel's drops on a port's AF_XDP sockets, as the table lists them.
        pub const SOCKET_DROPS: &[SocketDrop] = &[
            $(SocketDrop { name: stringify!($k), label: $k_label, meaning: $k_meaning },)*
        ];

        /// A port's counters, as the control protocol carries them: the table's
        /// reported rows, and the drops by reason.
        #[derive(
            Clone, Debug, Default, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize,
        )]
        pub struct PortCounters {
            $($(#[doc = $wr_doc])* $(#[serde($($wr_serde)*)])* pub $wr: u64,)*
            $($(#[doc = $fr_doc])* $(#[serde($($fr_serde)*)])* pub $fr: u64,)*
            /// Drops by reason (hairpin's and the kernel's), only those that happened.
            pub drops: ::std::collections::BTreeMap<String, u64>,
        }

        impl PortCounters {
            /// Every counter but the drops, in the order of the JSON object.
            pub const ROWS: &[CounterRow<Self>] = &[
                $(counter_row!(
                    PortCounters, $wr
                    $(, metric($($wr_metric)*))?
                    $(, column($($wr_column)*))?
                ),)*
                $(counter_row!(
                    PortCounters, $fr
                    $(, metric($($fr_metric)*))?
                    $(, column($($fr_column)*))?
                ),)*
            ];
        }

        impl From<&PortQueueSnapshot> for PortCounters {
            fn from(s: &PortQueueSnapshot) -> Self {
                Self {
                    $($wr: s.$wr,)*
                    $($fr: s.$fr,)*
                    drops: s
                        .drop_counts()
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.to_owned(), n))
                        .collect(),
                }
            }
        }
    };
}

/// The per-worker counters from their table: [`super::WorkerCounters`] (with the
/// fields given verbatim), [`super::WorkerSnapshot`] and [`super::WorkerStats`] (the
/// DTO: the fields given verbatim first, then the rows; its conversion and `ROWS`).
///
/// A row is as a reported per-port row, without a column.
macro_rules! worker_counters {
    (
        $(#[$wc_attr:meta])*
        pub struct WorkerCounters {
            $($(#[$wx_attr:meta])* pub $wx:ident: $wx_ty:ty,)*
        }
        $(#[$ws_attr:meta])*
        pub struct WorkerStats {
            $($(#[$sx_attr:meta])* pub $sx:ident: $sx_ty:ty,)*
        }
        counted by the workers, reported {
            $(
                $(#[doc = $w_doc:literal])*
                $(#[serde($($w_serde:tt)*)])*
                $w:ident
                $(metric($($w_metric:tt)*))?
                ;
            )*
        }
    ) => {
        $(#[$wc_attr])*
        #[derive(Debug, Default)]
        pub struct WorkerCounters {
            $($(#[$wx_attr])* pub $wx: $wx_ty,)*
            $($(#[doc = $w_doc])* pub $w: Counter,)*
        }

        /// A plain copy of a worker's own counters (the table's rows).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct WorkerSnapshot {
            $($(#[doc = $w_doc])* pub $w: u64,)*
        }

        impl WorkerSnapshot {
            /// Reads `c`.
            pub fn of(c: &WorkerCounters) -> Self {
                Self {
                    $($w: c.$w.get(),)*
                }
            }
        }

        $(#[$ws_attr])*
        #[derive(
            Clone, Debug, Default, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize,
        )]
        pub struct WorkerStats {
            $($(#[$sx_attr])* pub $sx: $sx_ty,)*
            $($(#[doc = $w_doc])* $(#[serde($($w_serde)*)])* pub $w: u64,)*
        }

        impl WorkerStats {
            /// The table's rows, in the order of the JSON object.
            pub const ROWS: &[CounterRow<Self>] = &[
                $(counter_row!(WorkerStats, $w $(, metric($($w_metric)*))?),)*
            ];
        }

        /// The table's rows from the snapshot, the other fields zero (set them with
        /// `..WorkerStats::from(&snapshot)`).
        impl From<&WorkerSnapshot> for WorkerStats {
            fn from(s: &WorkerSnapshot) -> Self {
                Self {
                    $($w: s.$w,)*
                    ..Self::default()
                }
            }
        }
    };
}
