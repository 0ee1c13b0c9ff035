//! What `wire::checksum::finish_partial` costs per frame, on one core: for a frame
//! whose checksum is whole (the header read and the pseudo-header sum every TCP or UDP
//! frame pays) and for one an offload left partial (the segment summed), at three
//! sizes; and what `wire::segment::Cutter` costs to cut a large TCP segment (an
//! offload's, as a guest's TSO hands it over) into segments of MTU 1500, copies into
//! fresh buffers included. `cargo bench -p hairpin --bench checksum`; figures in
//! docs/performance.md.
use std::{hint::black_box, time::Instant};

use hairpin::wire::{
    checksum::{Finish, finish_partial},
    segment::{Cutter, MAX_HEADERS},
};
use hairpin_common::csum;

/// A TCP/IPv4 frame of `len` bytes whose checksum field holds the pseudo-header's sum,
/// as a stack with TX checksumming on hands it over.
fn partial_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[46] = 0x50; // TCP data offset
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    let ip: &[u8; 20] = f[14..34].try_into().unwrap();
    let pseudo = csum::ipv4(ip).unwrap().pseudo;
    f[50..52].copy_from_slice(&pseudo.to_be_bytes());
    f
}

/// Nanoseconds per call of `finish_partial` on `frame`, the field put back to `reset`
/// before each call when given.
fn ns_per_frame(frame: &mut [u8], reset: Option<[u8; 2]>) -> f64 {
    const ROUNDS: u32 = 200_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            if let Some(r) = reset {
                frame[50..52].copy_from_slice(&r);
            }
            black_box(finish_partial(black_box(&mut *frame), &[]));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
    }
    best
}

fn main() {
    println!("| frame | checksum whole (ns/frame) | checksum partial, finished (ns/frame) |");
    println!("| ---: | ---: | ---: |");
    for len in [64, 1514, 3514] {
        let mut partial = partial_frame(len);
        let field = [partial[50], partial[51]];
        let mut whole = partial.clone();
        assert_eq!(finish_partial(&mut whole, &[]), Finish::Finished);
        let whole_ns = ns_per_frame(&mut whole, None);
        let partial_ns = ns_per_frame(&mut partial, Some(field));
        println!("| {len} B | {whole_ns:.1} | {partial_ns:.1} |");
    }
    println!();
    println!("| large segment | segments of MTU 1500 | ns per large segment | ns per segment |");
    println!("| ---: | ---: | ---: | ---: |");
    for len in [2 * 1514, 16 * 1024, 65_000] {
        let frame = partial_frame(len);
        let (ns, segments) = ns_per_cut(&frame);
        println!(
            "| {len} B | {segments} | {ns:.0} | {:.0} |",
            ns / segments as f64
        );
    }
}

/// Nanoseconds to cut `frame` (as 1792-byte buffers, hairpin's default UMEM frames)
/// into segments for MTU 1500, each copied into a buffer as the workers do; and the
/// segments made.
fn ns_per_cut(frame: &[u8]) -> (f64, usize) {
    const ROUNDS: u32 = 2_000;
    let parts: Vec<&[u8]> = frame.chunks(1792).collect();
    let mut out = vec![0u8; 2048];
    let mut best = f64::MAX;
    let mut segments = 0;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            let mut cutter = Cutter::new(parts[0], &parts[1..], 1500).unwrap();
            let hlen = cutter.header_len();
            let (mut headers, mut payload) = ([0; MAX_HEADERS], Vec::with_capacity(4));
            segments = 0;
            while cutter.next_into(&mut headers, &mut payload).is_some() {
                out[..hlen].copy_from_slice(&headers[..hlen]);
                let mut at = hlen;
                for p in &payload {
                    out[at..at + p.len()].copy_from_slice(p);
                    at += p.len();
                }
                black_box(&out);
                segments += 1;
            }
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
    }
    (best, segments)
}
