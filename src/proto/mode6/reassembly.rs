//! Reassembling a fragmented mode-6 response by offset.
//!
//! ntpd splits a response into fragments of at most 468 bytes, each saying
//! where its data belongs (`offset`), all but the last with the More bit set
//! (`ctl_flushpkt()` in ntpd's `ntp_control.c`). UDP may reorder, duplicate
//! or drop them, so data is placed by offset and the response is complete
//! only when the last fragment has been seen and the fragments cover every
//! byte before its end. Anything that cannot be part of one consistent
//! response (overlapping or conflicting data, data beyond the end or the size
//! cap, a second "last" fragment) is an error, never silently concatenated.

use std::fmt;

use super::{AssocId, ErrorCode, Fragment, Opcode, Sequence};

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status word of the last fragment (system or peer status).
    pub status: u16,
    /// The association it describes.
    pub assoc_id: AssocId,
    /// The reassembled data.
    pub data: Vec<u8>,
}

/// Where a reassembly stands after a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More fragments are needed.
    Incomplete,
    /// Every fragment arrived.
    Complete(Response),
}

/// Why a fragment does not fit the response being reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyError {
    /// The fragment answers another request (sequence number); not an error
    /// in the response, the caller ignores it.
    WrongSequence {
        /// The request's.
        expected: Sequence,
        /// The fragment's.
        got: Sequence,
    },
    /// Same sequence number but another opcode or association: not ours either.
    WrongRequest {
        /// The fragment's opcode.
        opcode: Opcode,
        /// The fragment's association.
        assoc_id: AssocId,
    },
    /// The daemon answered with an error.
    Server(ErrorCode),
    /// A fragment without data that claims more follow.
    EmptyFragment {
        /// Its offset.
        offset: usize,
    },
    /// A fragment that overlaps data already received with other bytes.
    Overlap {
        /// Its offset.
        offset: usize,
        /// Its end (exclusive).
        end: usize,
    },
    /// A fragment that reaches beyond the size cap.
    TooLarge {
        /// Its end (exclusive).
        end: usize,
        /// The cap.
        limit: usize,
    },
    /// Data beyond the end the last fragment set, or a last fragment that
    /// ends before data already received.
    BeyondEnd {
        /// The offending end.
        end: usize,
        /// The response's end.
        total: usize,
    },
    /// A second last fragment with another end.
    ConflictingEnd {
        /// The end seen first.
        first: usize,
        /// The end seen now.
        second: usize,
    },
    /// The caller gave up before the response was complete.
    Incomplete {
        /// Data bytes received.
        received: usize,
        /// The response's end, if the last fragment arrived.
        total: Option<usize>,
    },
}

impl ReassemblyError {
    /// Whether the fragment simply belongs to another request and should be
    /// ignored rather than fail this one.
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            ReassemblyError::WrongSequence { .. } | ReassemblyError::WrongRequest { .. }
        )
    }
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReassemblyError::WrongSequence { expected, got } => write!(
                f,
                "fragment for sequence {} while waiting for {}",
                got.0, expected.0
            ),
            ReassemblyError::WrongRequest { opcode, assoc_id } => write!(
                f,
                "fragment for opcode {} association {} answers another request",
                opcode.0, assoc_id.0
            ),
            ReassemblyError::Server(code) => write!(f, "ntpd answered with an error: {code}"),
            ReassemblyError::EmptyFragment { offset } => {
                write!(f, "empty non-final fragment at offset {offset}")
            }
            ReassemblyError::Overlap { offset, end } => {
                write!(f, "fragment {offset}..{end} overlaps data already received")
            }
            ReassemblyError::TooLarge { end, limit } => {
                write!(f, "fragment ending at {end} exceeds the {limit}-byte cap")
            }
            ReassemblyError::BeyondEnd { end, total } => {
                write!(
                    f,
                    "fragment ending at {end} but the response ends at {total}"
                )
            }
            ReassemblyError::ConflictingEnd { first, second } => {
                write!(f, "two last fragments, ending at {first} and at {second}")
            }
            ReassemblyError::Incomplete {
                received,
                total: Some(total),
            } => write!(f, "incomplete response: {received} of {total} bytes"),
            ReassemblyError::Incomplete {
                received,
                total: None,
            } => write!(
                f,
                "incomplete response: {received} bytes, last fragment missing"
            ),
        }
    }
}

impl std::error::Error for ReassemblyError {}

/// Collects the fragments answering one request.
#[derive(Debug, Clone)]
pub struct Reassembler {
    opcode: Opcode,
    sequence: Sequence,
    assoc_id: AssocId,
    limit: usize,
    data: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and non-empty.
    ranges: Vec<(usize, usize)>,
    total: Option<usize>,
    status: u16,
}

impl Reassembler {
    /// Waits for the response to the request with this opcode, sequence and
    /// association, accepting at most `limit` bytes of data in all.
    pub fn new(opcode: Opcode, sequence: Sequence, assoc_id: AssocId, limit: usize) -> Self {
        Reassembler {
            opcode,
            sequence,
            assoc_id,
            limit,
            data: Vec::new(),
            ranges: Vec::new(),
            total: None,
            status: 0,
        }
    }

    /// The sequence number it waits for.
    pub fn sequence(&self) -> Sequence {
        self.sequence
    }

    /// Adds a fragment. Mismatch errors (see [`ReassemblyError::is_mismatch`])
    /// leave the reassembly untouched; any other error means the response
    /// cannot be trusted. An exact duplicate of a fragment already received
    /// (UDP may duplicate datagrams) is accepted and changes nothing.
    pub fn push(&mut self, fragment: &Fragment<'_>) -> Result<Progress, ReassemblyError> {
        let h = &fragment.header;
        if h.sequence != self.sequence {
            return Err(ReassemblyError::WrongSequence {
                expected: self.sequence,
                got: h.sequence,
            });
        }
        if h.opcode != self.opcode || h.assoc_id != self.assoc_id {
            return Err(ReassemblyError::WrongRequest {
                opcode: h.opcode,
                assoc_id: h.assoc_id,
            });
        }
        if let Some(code) = h.error_code() {
            return Err(ReassemblyError::Server(code));
        }
        let start = usize::from(h.offset);
        let end = start + fragment.data.len();
        if end > self.limit {
            return Err(ReassemblyError::TooLarge {
                end,
                limit: self.limit,
            });
        }
        if h.more && start == end {
            return Err(ReassemblyError::EmptyFragment { offset: start });
        }
        match (self.total, h.more) {
            (Some(total), true) if end > total => {
                return Err(ReassemblyError::BeyondEnd { end, total });
            }
            (Some(total), false) if end != total => {
                return Err(ReassemblyError::ConflictingEnd {
                    first: total,
                    second: end,
                });
            }
            (None, false) => {
                if let Some(&(_, last)) = self.ranges.last()
                    && last > end
                {
                    return Err(ReassemblyError::BeyondEnd {
                        end: last,
                        total: end,
                    });
                }
            }
            _ => {}
        }
        if start < end {
            let at = self.ranges.partition_point(|&(_, e)| e <= start);
            match self.ranges.get(at) {
                // The same bytes again: nothing to add, but a duplicate may
                // still be the one that says where the response ends (its
                // twin had the More bit set), so the end is taken below.
                Some(&(s, e))
                    if (s, e) == (start, end) && self.data[start..end] == *fragment.data => {}
                Some(&(s, _)) if s < end => {
                    return Err(ReassemblyError::Overlap { offset: start, end });
                }
                _ => {
                    if self.data.len() < end {
                        self.data.resize(end, 0);
                    }
                    self.data[start..end].copy_from_slice(fragment.data);
                    self.ranges.insert(at, (start, end));
                }
            }
        }
        if !h.more {
            self.total = Some(end);
            self.status = h.status;
        }
        Ok(self.progress())
    }

    fn progress(&self) -> Progress {
        let Some(total) = self.total else {
            return Progress::Incomplete;
        };
        let mut covered = 0;
        for &(s, e) in &self.ranges {
            if s != covered {
                return Progress::Incomplete;
            }
            covered = e;
        }
        if covered != total {
            return Progress::Incomplete;
        }
        let mut data = self.data.clone();
        data.truncate(total);
        Progress::Complete(Response {
            status: self.status,
            assoc_id: self.assoc_id,
            data,
        })
    }

    /// The error to report when giving up on an incomplete response.
    pub fn incomplete(&self) -> ReassemblyError {
        ReassemblyError::Incomplete {
            received: self.ranges.iter().map(|(s, e)| e - s).sum(),
            total: self.total,
        }
    }
}
