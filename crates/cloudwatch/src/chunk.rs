//! The compact form of one sealed hour of a series' per-minute aggregates.
//!
//! Why this encoding: most series carry one sample per minute (the agents and the load balancer
//! publish every few seconds, but a minute of a gauge often holds a single PutMetricData value),
//! and neighbouring minutes of a metric are close in value. So a chunk is a 60-bit presence
//! bitmap (timestamps cost nothing when minutes are regular) followed by, per present minute, one
//! flag bit "single sample" — then one value, else count, sum, min and max — each encoded as the
//! XOR with the same field of the previous minute, Gorilla-style (Pelkonen et al., VLDB 2015): a
//! repeated value costs one bit, a close one a few leading/trailing-zero-stripped bits.
//!
//! XOR of doubles does poorly on decimal data (45.3 → 45.7 differs in most mantissa bits), and
//! most metrics are decimals with few digits (percentages, milliseconds, counts). So when every
//! number of the hour is an exact decimal with at most 3 fraction digits, the chunk stores them
//! as integers scaled by 10^k instead, each field as the zigzag delta from its previous value in
//! a few size classes (`0`, `10`+7 bits, `110`+14, `1110`+24, `1111`+64): a gauge moving by
//! tenths costs about 10 bits a minute.

use crate::stats::Agg;

/// Bits appended to a byte vector, most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    used_in_last: u8,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        if self.used_in_last == 0 || self.used_in_last == 8 {
            self.bytes.push(0);
            self.used_in_last = 0;
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used_in_last;
        }
        self.used_in_last += 1;
    }

    fn bits(&mut self, value: u64, count: u32) {
        for i in (0..count).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.position / 8)?;
        let bit = byte & (0x80 >> (self.position % 8)) != 0;
        self.position += 1;
        Some(bit)
    }

    fn bits(&mut self, count: u32) -> Option<u64> {
        let mut out = 0u64;
        for _ in 0..count {
            out = (out << 1) | u64::from(self.bit()?);
        }
        Some(out)
    }
}

/// One field's XOR state: the previous value and the window of meaningful bits last written.
#[derive(Clone, Copy, Default)]
struct XorField {
    previous: u64,
    leading: u32,
    length: u32,
}

impl XorField {
    fn write(&mut self, out: &mut BitWriter, value: f64) {
        let bits = value.to_bits();
        let xor = bits ^ self.previous;
        self.previous = bits;
        if xor == 0 {
            out.bit(false);
            return;
        }
        out.bit(true);
        let leading = xor.leading_zeros();
        let trailing = xor.trailing_zeros();
        let fits = self.length > 0
            && leading >= self.leading
            && trailing >= 64 - self.leading - self.length;
        if fits {
            out.bit(false);
            out.bits(xor >> (64 - self.leading - self.length), self.length);
        } else {
            let length = 64 - leading - trailing;
            out.bit(true);
            out.bits(u64::from(leading), 6);
            out.bits(u64::from(length - 1), 6);
            out.bits(xor >> trailing, length);
            self.leading = leading;
            self.length = length;
        }
    }

    fn read(&mut self, input: &mut BitReader) -> Option<f64> {
        if input.bit()? {
            if input.bit()? {
                self.leading = input.bits(6)? as u32;
                self.length = input.bits(6)? as u32 + 1;
                if self.leading + self.length > 64 {
                    return None;
                }
            } else if self.length == 0 {
                return None;
            }
            let meaningful = input.bits(self.length)?;
            self.previous ^= meaningful << (64 - self.leading - self.length);
        }
        Some(f64::from_bits(self.previous))
    }
}

/// One field's integer-delta state, for decimal chunks.
#[derive(Clone, Copy, Default)]
struct DeltaField {
    previous: i64,
}

impl DeltaField {
    fn write(&mut self, out: &mut BitWriter, value: i64) {
        let delta = value.wrapping_sub(self.previous);
        self.previous = value;
        let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
        if zigzag == 0 {
            out.bit(false);
        } else if zigzag < 1 << 7 {
            out.bits(0b10, 2);
            out.bits(zigzag, 7);
        } else if zigzag < 1 << 14 {
            out.bits(0b110, 3);
            out.bits(zigzag, 14);
        } else if zigzag < 1 << 24 {
            out.bits(0b1110, 4);
            out.bits(zigzag, 24);
        } else {
            out.bits(0b1111, 4);
            out.bits(zigzag, 64);
        }
    }

    fn read(&mut self, input: &mut BitReader) -> Option<i64> {
        let width = if !input.bit()? {
            0
        } else if !input.bit()? {
            7
        } else if !input.bit()? {
            14
        } else if !input.bit()? {
            24
        } else {
            64
        };
        let zigzag = input.bits(width)?;
        let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        self.previous = self.previous.wrapping_add(delta);
        Some(self.previous)
    }
}

/// Integers this large lose no precision as doubles.
const MAX_EXACT: f64 = (1u64 << 52) as f64;

/// The smallest k ≤ 3 such that every number is an exact decimal with k fraction digits.
fn decimal_scale(minutes: &[(u8, Agg)]) -> Option<u32> {
    (0..=3u32).find(|k| {
        let scale = 10f64.powi(*k as i32);
        minutes.iter().all(|(_, agg)| {
            [agg.count, agg.sum, agg.min, agg.max].iter().all(|v| {
                let scaled = (v * scale).round();
                scaled.abs() < MAX_EXACT && scaled / scale == *v
            })
        })
    })
}

fn is_single(agg: &Agg) -> bool {
    agg.count == 1.0 && agg.sum == agg.min && agg.sum == agg.max
}

/// Encodes minutes (offset within the hour 0..60, strictly increasing) and their aggregates.
pub fn encode(minutes: &[(u8, Agg)]) -> Box<[u8]> {
    let mut presence = 0u64;
    for (minute, _) in minutes {
        presence |= 1 << minute;
    }
    let mut out = BitWriter::default();
    let scale = decimal_scale(minutes);
    out.bit(scale.is_some());
    if let Some(k) = scale {
        out.bits(u64::from(k), 2);
    }
    out.bits(presence, 60);
    match scale {
        Some(k) => {
            let factor = 10f64.powi(k as i32);
            let int = |v: f64| (v * factor).round() as i64;
            let mut fields = [DeltaField::default(); 4];
            for (_, agg) in minutes {
                let single = is_single(agg);
                out.bit(single);
                if single {
                    fields[1].write(&mut out, int(agg.sum));
                    fields[0].previous = int(1.0);
                    fields[2].previous = fields[1].previous;
                    fields[3].previous = fields[1].previous;
                } else {
                    fields[0].write(&mut out, int(agg.count));
                    fields[1].write(&mut out, int(agg.sum));
                    fields[2].write(&mut out, int(agg.min));
                    fields[3].write(&mut out, int(agg.max));
                }
            }
        }
        None => {
            let mut fields = [XorField::default(); 4];
            for (_, agg) in minutes {
                let single = is_single(agg);
                out.bit(single);
                if single {
                    fields[1].write(&mut out, agg.sum);
                    fields[0].previous = 1f64.to_bits();
                    fields[2].previous = agg.sum.to_bits();
                    fields[3].previous = agg.sum.to_bits();
                } else {
                    fields[0].write(&mut out, agg.count);
                    fields[1].write(&mut out, agg.sum);
                    fields[2].write(&mut out, agg.min);
                    fields[3].write(&mut out, agg.max);
                }
            }
        }
    }
    out.bytes.into_boxed_slice()
}

/// The minutes [`encode`] was given. `None` only for bytes it did not write.
pub fn decode(bytes: &[u8]) -> Option<Vec<(u8, Agg)>> {
    let mut input = BitReader { bytes, position: 0 };
    let scale = if input.bit()? {
        Some(input.bits(2)? as i32)
    } else {
        None
    };
    let presence = input.bits(60)?;
    let mut out = Vec::with_capacity(presence.count_ones() as usize);
    let present = (0..60u8).filter(|m| presence & (1 << m) != 0);
    match scale {
        Some(k) => {
            let factor = 10f64.powi(k);
            let float = |v: i64| v as f64 / factor;
            let mut fields = [DeltaField::default(); 4];
            for minute in present {
                let agg = if input.bit()? {
                    let value = fields[1].read(&mut input)?;
                    fields[0].previous = factor as i64;
                    fields[2].previous = value;
                    fields[3].previous = value;
                    Agg::one(float(value))
                } else {
                    Agg {
                        count: float(fields[0].read(&mut input)?),
                        sum: float(fields[1].read(&mut input)?),
                        min: float(fields[2].read(&mut input)?),
                        max: float(fields[3].read(&mut input)?),
                    }
                };
                out.push((minute, agg));
            }
        }
        None => {
            let mut fields = [XorField::default(); 4];
            for minute in present {
                let agg = if input.bit()? {
                    let value = fields[1].read(&mut input)?;
                    fields[0].previous = 1f64.to_bits();
                    fields[2].previous = value.to_bits();
                    fields[3].previous = value.to_bits();
                    Agg::one(value)
                } else {
                    Agg {
                        count: fields[0].read(&mut input)?,
                        sum: fields[1].read(&mut input)?,
                        min: fields[2].read(&mut input)?,
                        max: fields[3].read(&mut input)?,
                    }
                };
                out.push((minute, agg));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_mixed_minutes() {
        let minutes = vec![
            (0, Agg::one(42.5)),
            (1, Agg::one(42.5)),
            (2, Agg::one(43.0)),
            (5, Agg::one(-1.0e-9)),
            (
                6,
                Agg {
                    count: 3.0,
                    sum: 9.0,
                    min: 1.0,
                    max: 5.0,
                },
            ),
            (59, Agg::one(f64::MAX)),
        ];
        assert_eq!(decode(&encode(&minutes)).unwrap(), minutes);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_steady_gauge_costs_about_a_bit_per_minute() {
        let minutes: Vec<_> = (0..60).map(|m| (m, Agg::one(12.5))).collect();
        let bytes = encode(&minutes);
        // 60 presence bits + a full first value (~1 + 1 + 12 + 64 bits) + 59 × 2 bits.
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), minutes);
    }

    #[test]
    fn a_decimal_gauge_costs_about_ten_bits_a_minute() {
        let mut v = 40.0f64;
        let minutes: Vec<_> = (0..60u8)
            .map(|m| {
                v = ((v + f64::from(m % 7) / 10.0 - 0.3) * 10.0).round() / 10.0;
                (m, Agg::one(v))
            })
            .collect();
        let bytes = encode(&minutes);
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), minutes);
        // Not decimal: falls back to XOR, still exact.
        let thirds: Vec<_> = (0..60u8)
            .map(|m| (m, Agg::one(f64::from(m) / 3.0)))
            .collect();
        assert_eq!(decode(&encode(&thirds)).unwrap(), thirds);
    }

    proptest! {
        #[test]
        fn any_decimal_hour_round_trips(
            present in proptest::collection::btree_map(0u8..60, (1u32..5, -1_000_000i64..1_000_000, 0i64..100, 0u32..4), 0..60)
        ) {
            let minutes: Vec<(u8, Agg)> = present
                .into_iter()
                .map(|(m, (count, value, spread, digits))| {
                    let scale = 10f64.powi(digits as i32);
                    let v = value as f64 / scale;
                    let agg = if count == 1 {
                        Agg::one(v)
                    } else {
                        Agg { count: f64::from(count), sum: (value * i64::from(count)) as f64 / scale, min: (value - spread) as f64 / scale, max: (value + spread) as f64 / scale }
                    };
                    (m, agg)
                })
                .collect();
            prop_assert_eq!(decode(&encode(&minutes)).unwrap(), minutes);
        }

        #[test]
        fn any_hour_round_trips(
            present in proptest::collection::btree_map(0u8..60, (1u32..5, -1e6f64..1e6, 0f64..10.0), 0..60)
        ) {
            let minutes: Vec<(u8, Agg)> = present
                .into_iter()
                .map(|(m, (count, value, spread))| {
                    let agg = if count == 1 {
                        Agg::one(value)
                    } else {
                        Agg { count: f64::from(count), sum: value * f64::from(count), min: value - spread, max: value + spread }
                    };
                    (m, agg)
                })
                .collect();
            prop_assert_eq!(decode(&encode(&minutes)).unwrap(), minutes);
        }
    }
}
