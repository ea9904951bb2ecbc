//! The metric time series: per-minute aggregates for every series (sealed hours compressed, see
//! `chunk`), per-second aggregates for high-resolution ones, and the write-ahead log that makes
//! what `ingest` acknowledged survive a crash.
//!
//! Retention is CloudWatch's for the two resolutions berth keeps: 1-second data for 3 hours,
//! 1-minute data for 15 days (older data is dropped, not rolled up to 5-minute/1-hour).
//!
//! Durability: every ingested batch is written to `<metrics-dir>/wal.log` with one `write(2)`
//! before `ingest` returns, so an acknowledged batch survives `kill -9` of the process (the
//! kernel holds it); surviving a power loss would need an fsync per batch, which berth does not
//! pay for metrics. When the log outgrows twice the last snapshot (and at least
//! [`COMPACT_AT_LEAST`]), the whole state is rewritten as a snapshot in the same record format
//! (sealed chunks as they are in memory) into `wal.log.tmp`, fsynced and renamed over the log.
//! A torn record at the end (a crash in the middle of a write) is cut off at the next start.

use crate::chunk;
use crate::interface::Datapoint;
use crate::stats::{Agg, UNITS, unit_index};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const HIGH_RES_RETENTION_MS: i64 = 3 * 3_600_000;
pub const MINUTE_RETENTION_MS: i64 = 15 * 86_400_000;
/// The log is compacted when it is larger than this and twice the last snapshot.
pub const COMPACT_AT_LEAST: u64 = 64 * 1024 * 1024;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const NO_WAL_ID: u32 = u32::MAX;
/// The open hour keeps at most this many plain minutes, then folds all but the newest
/// `OPEN_MINUTES_KEPT` into its chunk.
const OPEN_MINUTES_MAX: usize = 10;
const OPEN_MINUTES_KEPT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("metrics write-ahead log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A series' identity: dimensions sorted by name, as CloudWatch treats them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn new(namespace: &str, metric_name: &str, dimensions: &[(String, String)]) -> SeriesKey {
        let mut dimensions = dimensions.to_vec();
        dimensions.sort();
        SeriesKey {
            namespace: namespace.to_string(),
            metric_name: metric_name.to_string(),
            dimensions,
        }
    }
}

struct Series {
    unit: u8,
    last_ms: i64,
    /// Encoded hours (hours since the epoch), in order: every past hour, and the minutes of
    /// `open_hour` folded so far.
    sealed: Vec<(i32, Box<[u8]>)>,
    open_hour: i32,
    /// The newest plain minutes of `open_hour`, in order.
    open: Vec<(u8, Agg)>,
    /// Per-second aggregates, only for data put with StorageResolution 1.
    seconds: SecondTier,
    wal_id: u32,
}

fn split_minute(ts_ms: i64) -> (i32, u8) {
    let minute = ts_ms.div_euclid(MINUTE_MS);
    let hour = minute.div_euclid(60);
    (hour as i32, (minute - hour * 60) as u8)
}

fn upsert<K: Ord + Copy>(items: &mut Vec<(K, Agg)>, key: K, agg: &Agg) {
    match items.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => items[i].1.merge(agg),
        Err(i) => items.insert(i, (key, *agg)),
    }
}

impl Series {
    fn new(ts_ms: i64) -> Series {
        Series {
            unit: 0,
            last_ms: i64::MIN,
            sealed: Vec::new(),
            open_hour: split_minute(ts_ms).0,
            open: Vec::new(),
            seconds: SecondTier::default(),
            wal_id: NO_WAL_ID,
        }
    }

    fn add_minute(&mut self, ts_ms: i64, agg: &Agg) {
        let (hour, minute) = split_minute(ts_ms);
        if hour == self.open_hour {
            upsert(&mut self.open, minute, agg);
            if self.open.len() > OPEN_MINUTES_MAX {
                // Plain minutes cost 40 bytes each: fold all but the newest few into the hour's
                // chunk. A late point for a folded minute lands in `open` again; reads and the
                // next fold merge the two, as aggregates merge exactly.
                let folded: Vec<(u8, Agg)> = self
                    .open
                    .drain(..self.open.len() - OPEN_MINUTES_KEPT)
                    .collect();
                self.merge_sealed(self.open_hour, &folded);
            }
        } else if hour > self.open_hour {
            if !self.open.is_empty() {
                let open = std::mem::take(&mut self.open);
                self.merge_sealed(self.open_hour, &open);
            }
            self.open_hour = hour;
            self.open = vec![(minute, *agg)];
        } else {
            self.merge_sealed(hour, &[(minute, *agg)]);
        }
    }

    /// Late data for a sealed hour (or a snapshot's chunk) merges into it: decode, merge,
    /// re-encode. Rare, so it is not worth a second uncompressed tier.
    fn merge_sealed(&mut self, hour: i32, minutes: &[(u8, Agg)]) {
        match self.sealed.binary_search_by(|(h, _)| h.cmp(&hour)) {
            Ok(i) => {
                let mut existing = chunk::decode(&self.sealed[i].1).unwrap_or_default();
                for (minute, agg) in minutes {
                    upsert(&mut existing, *minute, agg);
                }
                self.sealed[i].1 = chunk::encode(&existing);
            }
            Err(i) => self.sealed.insert(i, (hour, chunk::encode(minutes))),
        }
    }

    fn minutes_between(&self, start_ms: i64, end_ms: i64) -> Vec<(i64, Agg)> {
        let (first_hour, _) = split_minute(start_ms);
        let (last_hour, _) = split_minute(end_ms);
        let mut out = Vec::new();
        let mut take = |hour: i32, minutes: &[(u8, Agg)]| {
            for (minute, agg) in minutes {
                let ts = (i64::from(hour) * 60 + i64::from(*minute)) * MINUTE_MS;
                if ts >= start_ms && ts < end_ms {
                    out.push((ts, *agg));
                }
            }
        };
        let from = self.sealed.partition_point(|(h, _)| *h < first_hour);
        for (hour, bytes) in &self.sealed[from..] {
            if *hour > last_hour {
                break;
            }
            take(*hour, &chunk::decode(bytes).unwrap_or_default());
        }
        if self.open_hour >= first_hour && self.open_hour <= last_hour {
            take(self.open_hour, &self.open);
        }
        out
    }

    /// Drops what is past retention; true when nothing is left.
    fn expire(&mut self, now_ms: i64) -> bool {
        let (oldest_hour, _) = split_minute(now_ms - MINUTE_RETENTION_MS);
        self.sealed.retain(|(h, _)| *h >= oldest_hour);
        if self.open_hour < oldest_hour {
            self.open.clear();
        }
        self.seconds.expire(now_ms - HIGH_RES_RETENTION_MS);
        self.sealed.is_empty() && self.open.is_empty() && self.seconds.is_empty()
    }

    fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Series>()
            + self.sealed.iter().map(|(_, b)| b.len() + 16).sum::<usize>()
            + self.sealed.capacity() * std::mem::size_of::<(i32, Box<[u8]>)>()
            + self.open.capacity() * std::mem::size_of::<(u8, Agg)>()
            + self.seconds.approximate_bytes()
    }
}

/// The 1-second tier of a high-resolution series: the current minute's seconds plain, earlier
/// minutes as `chunk` encodings (a minute's 60 seconds fit the same 60-slot format an hour's
/// minutes use), kept for 3 hours.
#[derive(Default)]
struct SecondTier {
    /// Minutes since the epoch, in order.
    sealed: Vec<(i64, Box<[u8]>)>,
    open_minute: i64,
    open: Vec<(u8, Agg)>,
}

impl SecondTier {
    fn add(&mut self, ts_ms: i64, agg: &Agg) {
        let second = ts_ms.div_euclid(1000);
        let minute = second.div_euclid(60);
        let offset = (second - minute * 60) as u8;
        if self.open.is_empty() && self.sealed.is_empty() {
            self.open_minute = minute;
        }
        if minute == self.open_minute {
            upsert(&mut self.open, offset, agg);
        } else if minute > self.open_minute {
            if !self.open.is_empty() {
                let open = std::mem::take(&mut self.open);
                self.merge_sealed(self.open_minute, &open);
            }
            self.open_minute = minute;
            self.open = vec![(offset, *agg)];
            let oldest_kept = minute - HIGH_RES_RETENTION_MS / MINUTE_MS;
            let stale = self.sealed.partition_point(|(m, _)| *m < oldest_kept);
            self.sealed.drain(..stale);
        } else {
            self.merge_sealed(minute, &[(offset, *agg)]);
        }
    }

    fn merge_sealed(&mut self, minute: i64, seconds: &[(u8, Agg)]) {
        match self.sealed.binary_search_by(|(m, _)| m.cmp(&minute)) {
            Ok(i) => {
                let mut existing = chunk::decode(&self.sealed[i].1).unwrap_or_default();
                for (second, agg) in seconds {
                    upsert(&mut existing, *second, agg);
                }
                self.sealed[i].1 = chunk::encode(&existing);
            }
            Err(i) => self.sealed.insert(i, (minute, chunk::encode(seconds))),
        }
    }

    /// Every second held, `(ms since the epoch, aggregate)`, in order.
    fn all(&self) -> Vec<(i64, Agg)> {
        self.between(i64::MIN, i64::MAX)
    }

    fn between(&self, start_ms: i64, end_ms: i64) -> Vec<(i64, Agg)> {
        let first = start_ms.div_euclid(MINUTE_MS);
        let last = end_ms.div_euclid(MINUTE_MS);
        let mut out = Vec::new();
        let mut take = |minute: i64, seconds: &[(u8, Agg)]| {
            for (second, agg) in seconds {
                let ts = (minute * 60 + i64::from(*second)) * 1000;
                if ts >= start_ms && ts < end_ms {
                    out.push((ts, *agg));
                }
            }
        };
        let from = self.sealed.partition_point(|(m, _)| *m < first);
        for (minute, bytes) in &self.sealed[from..] {
            if *minute > last {
                break;
            }
            take(*minute, &chunk::decode(bytes).unwrap_or_default());
        }
        if self.open_minute >= first && self.open_minute <= last {
            take(self.open_minute, &self.open);
        }
        out
    }

    fn expire(&mut self, oldest_ms: i64) {
        let oldest = oldest_ms.div_euclid(MINUTE_MS);
        self.sealed.retain(|(m, _)| *m >= oldest);
        if self.open_minute < oldest {
            self.open.clear();
        }
    }

    fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_empty()
    }

    fn approximate_bytes(&self) -> usize {
        self.sealed.iter().map(|(_, b)| b.len() + 16).sum::<usize>()
            + self.sealed.capacity() * std::mem::size_of::<(i64, Box<[u8]>)>()
            + self.open.capacity() * std::mem::size_of::<(u8, Agg)>()
    }
}

/// A series as ListMetrics and the API handlers see it.
#[derive(Debug, Clone)]
pub struct SeriesInfo {
    pub key: SeriesKey,
    pub last_ms: i64,
}

/// Aggregated buckets of one series: the unit last put, and `(bucket start ms, aggregate)` in
/// time order.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    pub unit: Option<String>,
    pub buckets: Vec<(i64, Agg)>,
}

type Partitions = HashMap<String, HashMap<SeriesKey, Series>>;

struct State {
    partitions: Partitions,
    wal: Option<Wal>,
}

/// Every partition's series, behind one lock: ingest is a few hash lookups and array inserts per
/// point, so one lock is not the bottleneck on berth's machines.
pub struct SeriesStore {
    state: Mutex<State>,
}

impl SeriesStore {
    /// Opens the store, replaying `<dir>/wal.log` when a directory is given.
    pub fn open(dir: Option<&Path>, now_ms: i64) -> Result<SeriesStore, SeriesError> {
        let mut partitions = Partitions::new();
        let wal = match dir {
            Some(dir) => Some(Wal::open(dir, &mut partitions)?),
            None => None,
        };
        for series in partitions.values_mut() {
            series.retain(|_, s| !s.expire(now_ms));
        }
        Ok(SeriesStore {
            state: Mutex::new(State { partitions, wal }),
        })
    }

    pub fn ingest(&self, partition: &str, points: &[Datapoint]) -> Result<(), SeriesError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock();
        let State { partitions, wal } = &mut *state;
        if !partitions.contains_key(partition) {
            partitions.insert(partition.to_string(), HashMap::new());
        }
        let series_map = partitions.get_mut(partition).expect("inserted above");
        let keys: Vec<SeriesKey> = points
            .iter()
            .map(|p| SeriesKey::new(&p.namespace, &p.metric_name, &p.dimensions))
            .collect();
        if let Some(wal) = wal {
            let mut record = Vec::with_capacity(points.len() * 32);
            let mut defined = Vec::new();
            for (key, point) in keys.iter().zip(points) {
                if !series_map.contains_key(key) {
                    series_map.insert(key.clone(), Series::new(point.timestamp_ms));
                }
                let series = series_map.get_mut(key).expect("inserted above");
                if series.wal_id == NO_WAL_ID {
                    series.wal_id = wal.next_id;
                    wal.next_id += 1;
                    defined.push(key);
                    encode_def(&mut record, series.wal_id, partition, key);
                }
                encode_point(
                    &mut record,
                    series.wal_id,
                    point.timestamp_ms,
                    Tiers::of(point.storage_resolution),
                    unit_index(point.unit.as_deref()),
                    &Agg::from_values(&point.values),
                );
            }
            if let Err(e) = wal.append(&record) {
                // What the log does not hold was not acknowledged: forget the ids defined in
                // this batch so the next batch defines them again.
                for key in defined {
                    if let Some(series) = series_map.get_mut(key) {
                        series.wal_id = NO_WAL_ID;
                    }
                }
                return Err(e);
            }
        }
        for (key, point) in keys.into_iter().zip(points) {
            let series = match series_map.get_mut(&key) {
                Some(series) => series,
                None => series_map
                    .entry(key)
                    .or_insert_with(|| Series::new(point.timestamp_ms)),
            };
            apply(
                series,
                point.timestamp_ms,
                Tiers::of(point.storage_resolution),
                unit_index(point.unit.as_deref()),
                &Agg::from_values(&point.values),
            );
        }
        if let Some(wal) = wal
            && wal.should_compact()
        {
            wal.compact(partitions)?;
        }
        Ok(())
    }

    /// Drops data past retention and series left empty.
    pub fn expire(&self, now_ms: i64) {
        let mut state = self.state.lock();
        for series in state.partitions.values_mut() {
            series.retain(|_, s| !s.expire(now_ms));
        }
        state.partitions.retain(|_, s| !s.is_empty());
    }

    /// Forgets everything (the server's `/_berth/reset`), the log included.
    pub fn reset(&self) -> Result<(), SeriesError> {
        let mut state = self.state.lock();
        state.partitions.clear();
        let State { partitions, wal } = &mut *state;
        if let Some(wal) = wal {
            wal.compact(partitions)?;
        }
        Ok(())
    }

    /// The series of a partition, in key order.
    pub fn list(&self, partition: &str) -> Vec<SeriesInfo> {
        let state = self.state.lock();
        let mut out: Vec<SeriesInfo> = state
            .partitions
            .get(partition)
            .map(|m| {
                m.iter()
                    .map(|(key, s)| SeriesInfo {
                        key: key.clone(),
                        last_ms: s.last_ms,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The series' aggregates in `[start, end)` summed into `period_s`-second buckets aligned on
    /// the epoch. Periods under a minute read the 1-second tier when it has data in the range,
    /// others (and those) the 1-minute tier.
    pub fn buckets(
        &self,
        partition: &str,
        key: &SeriesKey,
        start_ms: i64,
        end_ms: i64,
        period_s: i64,
    ) -> Buckets {
        let state = self.state.lock();
        let Some(series) = state.partitions.get(partition).and_then(|m| m.get(key)) else {
            return Buckets::default();
        };
        let period_ms = period_s.max(1) * 1000;
        // A short period over standard-resolution data (or high-resolution data past its 3
        // hours) sees the minutes, each in the bucket its minute starts.
        let seconds = if period_s < 60 {
            series.seconds.between(start_ms, end_ms)
        } else {
            Vec::new()
        };
        let raw = if seconds.is_empty() {
            series.minutes_between(start_ms, end_ms)
        } else {
            seconds
        };
        let unit = Some(UNITS[usize::from(series.unit)].to_string());
        drop(state);
        let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
        for (ts, agg) in raw {
            let bucket = ts.div_euclid(period_ms) * period_ms;
            buckets
                .entry(bucket)
                .and_modify(|b| b.merge(&agg))
                .or_insert(agg);
        }
        Buckets {
            unit,
            buckets: buckets.into_iter().collect(),
        }
    }

    /// What the series occupy in memory, counted (not the allocator's view).
    pub fn approximate_bytes(&self) -> usize {
        let state = self.state.lock();
        state
            .partitions
            .values()
            .flat_map(|m| m.iter())
            .map(|(key, s)| {
                s.approximate_bytes()
                    + std::mem::size_of::<SeriesKey>()
                    + key.namespace.capacity()
                    + key.metric_name.capacity()
                    + key
                        .dimensions
                        .iter()
                        .map(|(n, v)| n.capacity() + v.capacity() + 48)
                        .sum::<usize>()
                    + 8
            })
            .sum()
    }

    pub fn series_count(&self) -> usize {
        self.state.lock().partitions.values().map(|m| m.len()).sum()
    }
}

/// Which tiers a point feeds.
#[derive(Clone, Copy)]
struct Tiers {
    minute: bool,
    second: bool,
}

impl Tiers {
    fn of(storage_resolution: u32) -> Tiers {
        Tiers {
            minute: true,
            second: storage_resolution == 1,
        }
    }

    fn flags(self) -> u8 {
        u8::from(self.minute) << 1 | u8::from(self.second) << 2
    }

    fn from_flags(flags: u8) -> Tiers {
        Tiers {
            minute: flags & 2 != 0,
            second: flags & 4 != 0,
        }
    }
}

fn apply(series: &mut Series, ts_ms: i64, tiers: Tiers, unit: u8, agg: &Agg) {
    if tiers.minute {
        series.add_minute(ts_ms, agg);
    }
    if tiers.second {
        series.seconds.add(ts_ms, agg);
    }
    if ts_ms >= series.last_ms {
        series.last_ms = ts_ms;
        series.unit = unit;
    }
}

const TAG_DEF: u8 = 1;
const TAG_POINT: u8 = 2;
const TAG_CHUNK: u8 = 3;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names and values are at most 1024 bytes (the model's limits), well under u16.
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_def(out: &mut Vec<u8>, id: u32, partition: &str, key: &SeriesKey) {
    out.push(TAG_DEF);
    out.extend_from_slice(&id.to_le_bytes());
    put_str(out, partition);
    put_str(out, &key.namespace);
    put_str(out, &key.metric_name);
    out.push(key.dimensions.len().min(255) as u8);
    for (name, value) in key.dimensions.iter().take(255) {
        put_str(out, name);
        put_str(out, value);
    }
}

fn encode_point(out: &mut Vec<u8>, id: u32, ts_ms: i64, tiers: Tiers, unit: u8, agg: &Agg) {
    out.push(TAG_POINT);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&ts_ms.to_le_bytes());
    let single = agg.count == 1.0 && agg.sum == agg.min && agg.sum == agg.max;
    out.push(tiers.flags() | u8::from(!single));
    out.push(unit);
    if single {
        out.extend_from_slice(&agg.sum.to_le_bytes());
    } else {
        for v in [agg.count, agg.sum, agg.min, agg.max] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn encode_chunk(out: &mut Vec<u8>, id: u32, hour: i32, bytes: &[u8]) {
    out.push(TAG_CHUNK);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&hour.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads records; `None` at a torn or unknown record.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

struct Wal {
    dir: PathBuf,
    file: File,
    next_id: u32,
    written: u64,
    last_snapshot: u64,
}

impl Wal {
    fn path(dir: &Path) -> PathBuf {
        dir.join("wal.log")
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SeriesError + '_ {
        move |source| SeriesError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn open(dir: &Path, partitions: &mut Partitions) -> Result<Wal, SeriesError> {
        std::fs::create_dir_all(dir).map_err(Self::io(dir))?;
        let path = Self::path(dir);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(Self::io(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io(&path)(e)),
        }
        let (good, next_id) = replay(&bytes, partitions);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        if (good as u64) < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                kept = good,
                dropped = bytes.len() - good,
                "metrics log ends in a torn record; cutting it off"
            );
            file.set_len(good as u64).map_err(Self::io(&path))?;
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            next_id,
            written: good as u64,
            last_snapshot: good as u64,
        })
    }

    fn append(&mut self, record: &[u8]) -> Result<(), SeriesError> {
        self.file
            .write_all(record)
            .map_err(Self::io(&Self::path(&self.dir)))?;
        self.written += record.len() as u64;
        Ok(())
    }

    fn should_compact(&self) -> bool {
        self.written > COMPACT_AT_LEAST.max(self.last_snapshot * 2)
    }

    /// Rewrites the log as a snapshot of `partitions`, renumbering series.
    fn compact(&mut self, partitions: &mut Partitions) -> Result<(), SeriesError> {
        let tmp = self.dir.join("wal.log.tmp");
        let mut out = Vec::new();
        let mut next_id = 0u32;
        for (partition, series_map) in partitions.iter_mut() {
            for (key, series) in series_map.iter_mut() {
                series.wal_id = next_id;
                next_id += 1;
                encode_def(&mut out, series.wal_id, partition, key);
                for (hour, bytes) in &series.sealed {
                    encode_chunk(&mut out, series.wal_id, *hour, bytes);
                }
                let minute_only = Tiers {
                    minute: true,
                    second: false,
                };
                for (minute, agg) in &series.open {
                    let ts = (i64::from(series.open_hour) * 60 + i64::from(*minute)) * MINUTE_MS;
                    encode_point(&mut out, series.wal_id, ts, minute_only, series.unit, agg);
                }
                let second_only = Tiers {
                    minute: false,
                    second: true,
                };
                for (ts, agg) in series.seconds.all() {
                    encode_point(&mut out, series.wal_id, ts, second_only, series.unit, &agg);
                }
            }
        }
        let mut file = File::create(&tmp).map_err(Self::io(&tmp))?;
        file.write_all(&out).map_err(Self::io(&tmp))?;
        file.sync_all().map_err(Self::io(&tmp))?;
        let path = Self::path(&self.dir);
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        self.next_id = next_id;
        self.written = out.len() as u64;
        self.last_snapshot = out.len() as u64;
        Ok(())
    }
}

/// Applies the log's records to `partitions`; returns how many bytes were whole records and the
/// next free series id.
fn replay(bytes: &[u8], partitions: &mut Partitions) -> (usize, u32) {
    let mut ids: HashMap<u32, (String, SeriesKey)> = HashMap::new();
    let mut cursor = Cursor { bytes, at: 0 };
    let mut good = 0;
    let mut next_id = 0u32;
    while let Some(applied) = replay_one(&mut cursor, &mut ids, partitions, &mut next_id) {
        if !applied {
            break;
        }
        good = cursor.at;
    }
    (good, next_id)
}

fn replay_one(
    cursor: &mut Cursor,
    ids: &mut HashMap<u32, (String, SeriesKey)>,
    partitions: &mut Partitions,
    next_id: &mut u32,
) -> Option<bool> {
    let tag = cursor.u8()?;
    let id = cursor.u32()?;
    match tag {
        TAG_DEF => {
            let partition = cursor.str()?;
            let namespace = cursor.str()?;
            let metric_name = cursor.str()?;
            let n = cursor.u8()?;
            let mut dimensions = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                dimensions.push((cursor.str()?, cursor.str()?));
            }
            let key = SeriesKey {
                namespace,
                metric_name,
                dimensions,
            };
            *next_id = (*next_id).max(id.saturating_add(1));
            ids.insert(id, (partition, key));
        }
        TAG_POINT => {
            let ts = cursor.i64()?;
            let flags = cursor.u8()?;
            let unit = cursor.u8()?;
            let agg = if flags & 1 == 0 {
                Agg::one(cursor.f64()?)
            } else {
                Agg {
                    count: cursor.f64()?,
                    sum: cursor.f64()?,
                    min: cursor.f64()?,
                    max: cursor.f64()?,
                }
            };
            let series = series_for(ids, partitions, id, ts)?;
            apply(series, ts, Tiers::from_flags(flags), unit, &agg);
        }
        TAG_CHUNK => {
            let hour = cursor.i32()?;
            let len = cursor.u32()? as usize;
            let minutes = chunk::decode(cursor.take(len)?)?;
            let hour_ms = i64::from(hour) * HOUR_MS;
            let series = series_for(ids, partitions, id, hour_ms)?;
            if let Some((last, _)) = minutes.last() {
                series.last_ms = series.last_ms.max(hour_ms + i64::from(*last) * MINUTE_MS);
            }
            series.merge_sealed(hour, &minutes);
        }
        _ => return Some(false),
    }
    Some(true)
}

fn series_for<'a>(
    ids: &HashMap<u32, (String, SeriesKey)>,
    partitions: &'a mut Partitions,
    id: u32,
    ts_ms: i64,
) -> Option<&'a mut Series> {
    let (partition, key) = ids.get(&id)?;
    let series = partitions
        .entry(partition.clone())
        .or_default()
        .entry(key.clone())
        .or_insert_with(|| Series::new(ts_ms));
    series.wal_id = id;
    Some(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::Values;

    const T0: i64 = 1_764_000_000_000; // a whole hour

    fn point(metric: &str, ts: i64, value: f64, resolution: u32) -> Datapoint {
        Datapoint {
            namespace: "App".into(),
            metric_name: metric.into(),
            dimensions: vec![("B".into(), "2".into()), ("A".into(), "1".into())],
            timestamp_ms: ts,
            values: Values::One(value),
            unit: Some("Percent".into()),
            storage_resolution: resolution,
        }
    }

    fn key(metric: &str) -> SeriesKey {
        SeriesKey::new(
            "App",
            metric,
            &[("A".into(), "1".into()), ("B".into(), "2".into())],
        )
    }

    #[test]
    fn buckets_sum_minutes_across_sealed_and_open_hours() {
        let store = SeriesStore::open(None, T0).unwrap();
        let points: Vec<_> = (0..180)
            .map(|m| point("Cpu", T0 + m * MINUTE_MS, m as f64, 60))
            .collect();
        store.ingest("p", &points).unwrap();
        // A late point into the first (sealed) hour.
        store
            .ingest("p", &[point("Cpu", T0 + 30_000, 1000.0, 60)])
            .unwrap();
        let got = store.buckets("p", &key("Cpu"), T0, T0 + 3 * HOUR_MS, 3600);
        assert_eq!(got.unit.as_deref(), Some("Percent"));
        assert_eq!(got.buckets.len(), 3);
        let (ts, first) = got.buckets[0];
        assert_eq!(ts, T0);
        assert_eq!(first.count, 61.0);
        assert_eq!(first.sum, (0..60).sum::<i64>() as f64 + 1000.0);
        assert_eq!(first.max, 1000.0);
        assert_eq!(got.buckets[2].1.min, 120.0);
    }

    #[test]
    fn high_resolution_data_answers_short_periods_and_expires_after_three_hours() {
        let store = SeriesStore::open(None, T0).unwrap();
        let points: Vec<_> = (0..30)
            .map(|s| point("Lat", T0 + s * 1000, s as f64, 1))
            .collect();
        store.ingest("p", &points).unwrap();
        let got = store.buckets("p", &key("Lat"), T0, T0 + 30_000, 10);
        let sums: Vec<f64> = got.buckets.iter().map(|(_, a)| a.sum).collect();
        assert_eq!(sums, vec![45.0, 145.0, 245.0]);
        store.expire(T0 + HIGH_RES_RETENTION_MS + 60_000);
        // Past 3 hours a 10-second period sees the minute only.
        let late = store.buckets("p", &key("Lat"), T0, T0 + 30_000, 10);
        assert_eq!(late.buckets.len(), 1);
        assert_eq!(late.buckets[0].1.count, 30.0);
        // The minute tier still has it.
        let minute = store.buckets("p", &key("Lat"), T0, T0 + 60_000, 60);
        assert_eq!(minute.buckets[0].1.count, 30.0);
        store.expire(T0 + MINUTE_RETENTION_MS + 2 * HOUR_MS);
        assert_eq!(store.series_count(), 0);
    }

    #[test]
    fn the_second_tier_keeps_three_hours_compactly_and_takes_late_points() {
        let store = SeriesStore::open(None, T0).unwrap();
        let points: Vec<_> = (0..4 * 720)
            .map(|i| point("Hi", T0 + i * 5_000, (i % 10) as f64, 1))
            .collect();
        store.ingest("p", &points).unwrap();
        let end = T0 + 4 * HOUR_MS;
        let kept = store.buckets("p", &key("Hi"), T0, end, 5);
        // The current minute and the 180 before it.
        assert_eq!(kept.buckets.len(), 181 * 12);
        assert_eq!(kept.buckets.first().unwrap().0, end - 181 * MINUTE_MS);
        // A late point merges into its sealed minute.
        let late = end - 30 * MINUTE_MS + 1_000;
        store.ingest("p", &[point("Hi", late, 100.0, 1)]).unwrap();
        let got = store.buckets("p", &key("Hi"), late - 1_000, late + 9_000, 10);
        assert_eq!(got.buckets.len(), 1);
        assert_eq!(got.buckets[0].1.count, 3.0);
        assert_eq!(got.buckets[0].1.max, 100.0);
        let state = store.state.lock();
        let series = &state.partitions["p"][&key("Hi")];
        assert!(
            series.seconds.approximate_bytes() < 40 * 1024,
            "{}",
            series.seconds.approximate_bytes()
        );
    }

    #[test]
    fn the_log_replays_after_a_restart_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SeriesStore::open(Some(dir.path()), T0).unwrap();
            let points: Vec<_> = (0..90)
                .map(|m| point("Cpu", T0 + m * MINUTE_MS, 2.0, 60))
                .collect();
            store.ingest("p", &points).unwrap();
            store
                .ingest("p", &[point("Lat", T0 + 5_000, 7.0, 1)])
                .unwrap();
        }
        // A crash in the middle of a record.
        let path = dir.path().join("wal.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[TAG_POINT, 0, 0]).unwrap();
        drop(f);
        let store = SeriesStore::open(Some(dir.path()), T0 + 2 * HOUR_MS).unwrap();
        let got = store.buckets("p", &key("Cpu"), T0, T0 + 2 * HOUR_MS, 3600);
        assert_eq!(got.buckets[0].1.count, 60.0);
        assert_eq!(got.buckets[1].1.sum, 60.0);
        let lat = store.buckets("p", &key("Lat"), T0, T0 + 10_000, 1);
        assert_eq!(lat.buckets, vec![(T0 + 5_000, Agg::one(7.0))]);
        // Appending after the cut still replays.
        store
            .ingest("p", &[point("Cpu", T0 + 100 * MINUTE_MS, 3.0, 60)])
            .unwrap();
        drop(store);
        let store = SeriesStore::open(Some(dir.path()), T0 + 2 * HOUR_MS).unwrap();
        let got = store.buckets("p", &key("Cpu"), T0, T0 + 2 * HOUR_MS, 7200);
        assert_eq!(got.buckets[0].1.count, 91.0);
    }

    #[test]
    fn compaction_keeps_every_aggregate() {
        let dir = tempfile::tempdir().unwrap();
        let store = SeriesStore::open(Some(dir.path()), T0).unwrap();
        let points: Vec<_> = (0..150)
            .flat_map(|m| {
                [
                    point("Cpu", T0 + m * MINUTE_MS, m as f64, 60),
                    point("Lat", T0 + m * 1000, 1.0, 1),
                ]
            })
            .collect();
        store.ingest("p", &points).unwrap();
        let before = store.buckets("p", &key("Cpu"), T0, T0 + 3 * HOUR_MS, 60);
        {
            let mut state = store.state.lock();
            let State { partitions, wal } = &mut *state;
            wal.as_mut().unwrap().compact(partitions).unwrap();
        }
        drop(store);
        let store = SeriesStore::open(Some(dir.path()), T0 + HOUR_MS).unwrap();
        let after = store.buckets("p", &key("Cpu"), T0, T0 + 3 * HOUR_MS, 60);
        assert_eq!(before.buckets, after.buckets);
        let lat = store.buckets("p", &key("Lat"), T0, T0 + HOUR_MS, 60);
        assert_eq!(lat.buckets.iter().map(|(_, a)| a.count).sum::<f64>(), 150.0);
        let lat_seconds = store.buckets("p", &key("Lat"), T0, T0 + HOUR_MS, 1);
        assert_eq!(lat_seconds.buckets.len(), 150);
    }
}
