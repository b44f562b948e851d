//! The deterministic Nexmark event generator, after Apache Beam's (`sdks/java/testing/nexmark`):
//! the same event kinds, ids, foreign-key windows, hot keys and value shapes.
//!
//! - Event `n` (from 0) has id `n`; its kind is `n % 50`: 0 a person, 1 to 3 an auction, 4 to
//!   49 a bid. Person ids are `n / 50 + 1000`; auction ids follow Beam's base-0 numbering plus
//!   1000.
//! - Its time is `2015-07-15T00:00:00Z + n / rate` (rate in events per second of event time).
//! - Its random draws come from a SplitMix64 stream seeded with `n`: nothing depends on the
//!   order, the chunking or the parallelism of generation, nor on the wall clock.
//! - Strings are cut from tables built once (names, cities, channels and their urls, a block of
//!   random text for `extra`), so a bid costs a few random draws and copies.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

/// 2015-07-15T00:00:00Z in milliseconds.
const BASE_TIME_MS: i64 = 1_436_918_400_000;
/// Out of every 50 events: 1 person, 3 auctions, 46 bids.
const PROPORTION: u64 = 50;
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
/// Ids start here.
const FIRST_ID: i64 = 1000;
/// New references pick among the last this many people / auctions, and a few ahead.
const ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const AUCTION_ID_LEAD: u64 = 10;
/// Hot keys: the first person / auction of each block of this many.
const HOT_BLOCK: u64 = 100;
/// Sizes `extra` pads events to, roughly.
const PERSON_BYTES: usize = 200;
const AUCTION_BYTES: usize = 500;
const BID_BYTES: usize = 100;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] =
    ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS: usize = 10_000;

/// How many events, how fast (in event time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Events in all (then the streams are sealed).
    pub events: u64,
    /// Events per second of event time.
    pub rate: u64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig { events: 100_000, rate: 10_000 }
    }
}

/// The events of a range, one batch per stream (a batch may have no rows).
#[derive(Debug, Clone)]
pub struct Events {
    /// New people ([`person_schema`]).
    pub person: RecordBatch,
    /// New auctions ([`auction_schema`]).
    pub auction: RecordBatch,
    /// Bids ([`bid_schema`]).
    pub bid: RecordBatch,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// `person(id, name, emailAddress, creditCard, city, state, dateTime, extra)`, the names in
/// lower case as SQL normalizes unquoted names (`dateTime` in a query finds `datetime`).
pub fn person_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("emailaddress", DataType::Utf8, false),
        Field::new("creditcard", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("datetime", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// `auction(id, itemName, description, initialBid, reserve, dateTime, expires, seller,
/// category, extra)`.
pub fn auction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("itemname", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("initialbid", DataType::Int64, false),
        Field::new("reserve", DataType::Int64, false),
        Field::new("datetime", ts(), false),
        Field::new("expires", ts(), false),
        Field::new("seller", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// `bid(auction, bidder, price, channel, url, dateTime, extra)`.
pub fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("datetime", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// SplitMix64: a tiny, good-enough random stream, seeded per event.
struct Rng(u64);

impl Rng {
    fn for_event(n: u64) -> Rng {
        Rng(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// Tables built once: channel names and urls, and random text to cut `extra` from.
struct Tables {
    channels: Vec<String>,
    urls: Vec<String>,
    hot_urls: Vec<String>,
    text: String,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut rng = Rng::for_event(u64::MAX);
        let mut word = |rng: &mut Rng, len: usize| -> String {
            (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect()
        };
        let url = |rng: &mut Rng, word: &mut dyn FnMut(&mut Rng, usize) -> String| {
            format!(
                "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
                word(rng, 5),
                word(rng, 5),
                word(rng, 5)
            )
        };
        let hot_urls = HOT_CHANNELS.iter().map(|_| url(&mut rng, &mut word)).collect();
        let mut channels = Vec::with_capacity(CHANNELS);
        let mut urls = Vec::with_capacity(CHANNELS);
        for k in 0..CHANNELS {
            channels.push(format!("channel-{k}"));
            let base = url(&mut rng, &mut word);
            // Nine in ten carry a channel id.
            urls.push(if rng.chance(9, 10) {
                format!("{base}&channel_id={}", k.reverse_bits() >> 40)
            } else {
                base
            });
        }
        let text = word(&mut rng, 64 * 1024);
        Tables { channels, urls, hot_urls, text }
    })
}

/// Random text of `len` bytes (cut from the table).
fn text(rng: &mut Rng, len: usize) -> &'static str {
    let t = &tables().text;
    let len = len.min(t.len());
    let at = rng.below((t.len() - len + 1) as u64) as usize;
    &t[at..at + len]
}

/// Base-0 id of the last person at or before event `n`.
fn last_person(n: u64) -> u64 {
    n / PROPORTION
}

/// Base-0 id of the last auction at or before event `n`.
fn last_auction(n: u64) -> u64 {
    let (mut epoch, mut offset) = (n / PROPORTION, n % PROPORTION);
    if offset < PERSON_PROPORTION {
        // A person: the last auction is the previous epoch's last.
        epoch = epoch.saturating_sub(1);
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A person referred to by event `n`: among the last [`ACTIVE_PEOPLE`], or a few ahead.
fn some_person(rng: &mut Rng, n: u64) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// An auction referred to by event `n`: among the last [`IN_FLIGHT_AUCTIONS`], or a few ahead.
fn some_auction(rng: &mut Rng, n: u64) -> u64 {
    let last = last_auction(n);
    let first = last.saturating_sub(IN_FLIGHT_AUCTIONS);
    first + rng.below(last - first + 1 + AUCTION_ID_LEAD)
}

/// Steps of the price table.
const PRICE_STEPS: usize = 4096;

/// A price in cents: `round(10^(u * 6) * 100)` for a uniform `u`, read from a table of
/// `10^(6 i / 4096)` with linear interpolation (a call of `powf` per bid costs more than the
/// rest of the bid).
fn price(rng: &mut Rng) -> i64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..=PRICE_STEPS).map(|i| 10f64.powf(6.0 * i as f64 / PRICE_STEPS as f64)).collect()
    });
    let x = rng.unit() * PRICE_STEPS as f64;
    let i = (x as usize).min(PRICE_STEPS - 1);
    let (a, b) = (table[i], table[i + 1]);
    ((a + (b - a) * (x - i as f64)) * 100.0).round() as i64
}

/// `extra`: random text that brings an event of `size` bytes to about `average` bytes
/// (Beam's rule: none when it is already that big, else the difference ± 20%).
fn extra(rng: &mut Rng, size: usize, average: usize) -> &'static str {
    if size >= average {
        return "";
    }
    let wanted = average - size;
    let delta = wanted / 5;
    let len = wanted - delta + rng.below(2 * delta as u64 + 1) as usize;
    text(rng, len)
}

/// The generator of one configuration.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    config: NexmarkConfig,
}

impl Generator {
    /// A generator of `config`'s events.
    ///
    /// # Errors
    /// When the rate is 0.
    pub fn new(config: NexmarkConfig) -> Result<Generator> {
        if config.rate == 0 {
            return Err(Error::Sql(kappa_sql::Error::plan(
                "the nexmark event rate must be at least 1 event per second",
                None,
            )));
        }
        Ok(Generator { config })
    }

    /// The configuration.
    pub fn config(&self) -> NexmarkConfig {
        self.config
    }

    /// Event `n`'s time, in milliseconds since the epoch.
    pub fn time_ms(&self, n: u64) -> i64 {
        let offset = match n.checked_mul(1000) {
            Some(m) => u128::from(m / self.config.rate),
            None => u128::from(n) * 1000 / u128::from(self.config.rate),
        };
        BASE_TIME_MS + i64::try_from(offset).unwrap_or(i64::MAX - BASE_TIME_MS)
    }

    /// The events `from..to` (clamped to the configured count), one batch per stream.
    ///
    /// # Errors
    /// When Arrow cannot build a batch (not expected).
    pub fn events(&self, from: u64, to: u64) -> Result<Events> {
        let to = to.min(self.config.events);
        let from = from.min(to);
        let span = to - from;
        let mut person = PersonBuilder::with_capacity((span / PROPORTION + 1) as usize);
        let mut auction = AuctionBuilder::with_capacity((span * 3 / PROPORTION + 1) as usize);
        let mut bid = BidBuilder::with_capacity((span * 46 / PROPORTION + 1) as usize);
        let expiry_span = self.expiry_span();
        for n in from..to {
            let mut rng = Rng::for_event(n);
            let time = self.time_ms(n);
            match n % PROPORTION {
                0 => person.add(&mut rng, n, time),
                1..=3 => auction.add(&mut rng, n, time, expiry_span),
                _ => bid.add(&mut rng, n, time),
            }
        }
        Ok(Events { person: person.finish()?, auction: auction.finish()?, bid: bid.finish()? })
    }

    /// Only the rows of `kind` among the events `from..to` (clamped to the configured count):
    /// the same rows as that stream's batch of [`Generator::events`], without the cost of the
    /// other kinds (a source of one stream).
    ///
    /// # Errors
    /// When Arrow cannot build the batch (not expected).
    pub fn rows(&self, kind: Kind, from: u64, to: u64) -> Result<RecordBatch> {
        let to = to.min(self.config.events);
        let from = from.min(to);
        // Capacity hint only: capped, so that a huge range cannot ask for a huge allocation.
        let estimate = ((to - from).min(1 << 20) * kind.per_epoch() / PROPORTION + 1) as usize;
        let expiry_span = self.expiry_span();
        match kind {
            Kind::Person => {
                let mut b = PersonBuilder::with_capacity(estimate);
                kind.each(from, to, |n| b.add(&mut Rng::for_event(n), n, self.time_ms(n)));
                b.finish()
            }
            Kind::Auction => {
                let mut b = AuctionBuilder::with_capacity(estimate);
                kind.each(from, to, |n| {
                    b.add(&mut Rng::for_event(n), n, self.time_ms(n), expiry_span)
                });
                b.finish()
            }
            Kind::Bid => {
                let mut b = BidBuilder::with_capacity(estimate);
                kind.each(from, to, |n| b.add(&mut Rng::for_event(n), n, self.time_ms(n)));
                b.finish()
            }
        }
    }

    /// Only the bids among the events `from..to`: `rows(Kind::Bid, from, to)`.
    ///
    /// # Errors
    /// As [`Generator::rows`].
    pub fn bids(&self, from: u64, to: u64) -> Result<RecordBatch> {
        self.rows(Kind::Bid, from, to)
    }

    /// Auctions expire 1 to 2 times the event-time span of 1,666 events after they open.
    fn expiry_span(&self) -> i64 {
        (1_666 * 1000 / self.config.rate).max(1) as i64
    }
}

/// The three kinds of events, one stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `person`: a new person registers.
    Person,
    /// `auction`: a new auction opens.
    Auction,
    /// `bid`: a bid on an auction.
    Bid,
}

impl Kind {
    /// Every kind, in the order of their offsets in an epoch of 50 events.
    pub const ALL: [Kind; 3] = [Kind::Person, Kind::Auction, Kind::Bid];

    /// The kind's stream name: `person`, `auction`, `bid`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Auction => "auction",
            Kind::Bid => "bid",
        }
    }

    /// The kind named `name` (case-insensitive; `bids`, `persons`, `people` and `auctions`
    /// are accepted too).
    pub fn from_name(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "person" | "persons" | "people" => Some(Kind::Person),
            "auction" | "auctions" => Some(Kind::Auction),
            "bid" | "bids" => Some(Kind::Bid),
            _ => None,
        }
    }

    /// The schema of the kind's stream.
    pub fn schema(self) -> SchemaRef {
        match self {
            Kind::Person => person_schema(),
            Kind::Auction => auction_schema(),
            Kind::Bid => bid_schema(),
        }
    }

    /// The kind's offsets within an epoch of 50 events: `lo..hi`.
    fn offsets(self) -> (u64, u64) {
        match self {
            Kind::Person => (0, PERSON_PROPORTION),
            Kind::Auction => (PERSON_PROPORTION, PERSON_PROPORTION + AUCTION_PROPORTION),
            Kind::Bid => (PERSON_PROPORTION + AUCTION_PROPORTION, PROPORTION),
        }
    }

    fn per_epoch(self) -> u64 {
        let (lo, hi) = self.offsets();
        hi - lo
    }

    /// The event number of the kind's `k`-th row (from 0).
    pub fn event_of(self, k: u64) -> u64 {
        let (lo, _) = self.offsets();
        let per = self.per_epoch();
        (k / per).saturating_mul(PROPORTION).saturating_add(lo + k % per)
    }

    /// How many rows of the kind the events `0..events` hold.
    pub fn rows_in(self, events: u64) -> u64 {
        let (lo, _) = self.offsets();
        let per = self.per_epoch();
        events / PROPORTION * per + (events % PROPORTION).saturating_sub(lo).min(per)
    }

    /// Call `f` with every event number of the kind in `from..to`, in order.
    fn each(self, from: u64, to: u64, mut f: impl FnMut(u64)) {
        let (lo, hi) = self.offsets();
        let mut n = from;
        while n < to {
            let off = n % PROPORTION;
            if off < lo {
                n += lo - off;
            } else if off >= hi {
                n += PROPORTION - off + lo;
            } else {
                f(n);
                n += 1;
            }
        }
    }
}

struct PersonBuilder {
    id: Int64Builder,
    name: StringBuilder,
    email: StringBuilder,
    card: StringBuilder,
    city: StringBuilder,
    state: StringBuilder,
    time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl PersonBuilder {
    fn with_capacity(n: usize) -> Self {
        PersonBuilder {
            id: Int64Builder::with_capacity(n),
            name: StringBuilder::with_capacity(n, n * 12),
            email: StringBuilder::with_capacity(n, n * 16),
            card: StringBuilder::with_capacity(n, n * 19),
            city: StringBuilder::with_capacity(n, n * 8),
            state: StringBuilder::with_capacity(n, n * 2),
            time: TimestampMillisecondBuilder::with_capacity(n),
            extra: StringBuilder::with_capacity(n, n * PERSON_BYTES),
        }
    }

    fn add(&mut self, rng: &mut Rng, n: u64, time: i64) {
        self.id.append_value(last_person(n) as i64 + FIRST_ID);
        let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
        let name = format!("{first} {last}");
        let email = format!("{}@{}.com", text(rng, 7), text(rng, 5));
        let card: Vec<String> = (0..4).map(|_| format!("{:04}", rng.below(10_000))).collect();
        let card = card.join(" ");
        let city = CITIES[rng.below(CITIES.len() as u64) as usize];
        let state = STATES[rng.below(STATES.len() as u64) as usize];
        let size = 16 + name.len() + email.len() + card.len() + city.len() + state.len();
        self.name.append_value(name);
        self.email.append_value(email);
        self.card.append_value(card);
        self.city.append_value(city);
        self.state.append_value(state);
        self.time.append_value(time);
        self.extra.append_value(extra(rng, size, PERSON_BYTES));
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.card.finish()),
            Arc::new(self.city.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.extra.finish()),
        ];
        Ok(RecordBatch::try_new(person_schema(), columns)?)
    }
}

struct AuctionBuilder {
    id: Int64Builder,
    item: StringBuilder,
    description: StringBuilder,
    initial: Int64Builder,
    reserve: Int64Builder,
    time: TimestampMillisecondBuilder,
    expires: TimestampMillisecondBuilder,
    seller: Int64Builder,
    category: Int64Builder,
    extra: StringBuilder,
}

impl AuctionBuilder {
    fn with_capacity(n: usize) -> Self {
        AuctionBuilder {
            id: Int64Builder::with_capacity(n),
            item: StringBuilder::with_capacity(n, n * 20),
            description: StringBuilder::with_capacity(n, n * 100),
            initial: Int64Builder::with_capacity(n),
            reserve: Int64Builder::with_capacity(n),
            time: TimestampMillisecondBuilder::with_capacity(n),
            expires: TimestampMillisecondBuilder::with_capacity(n),
            seller: Int64Builder::with_capacity(n),
            category: Int64Builder::with_capacity(n),
            extra: StringBuilder::with_capacity(n, n * AUCTION_BYTES),
        }
    }

    fn add(&mut self, rng: &mut Rng, n: u64, time: i64, expiry_span: i64) {
        self.id.append_value(last_auction(n) as i64 + FIRST_ID);
        self.item.append_value(text(rng, 20));
        self.description.append_value(text(rng, 100));
        let initial = price(rng);
        self.initial.append_value(initial);
        self.reserve.append_value(initial + price(rng));
        self.time.append_value(time);
        let expiry = expiry_span + rng.below(expiry_span as u64 + 1) as i64;
        self.expires.append_value(time + expiry);
        // Hot sellers: three in four auctions are the current block's first person's.
        let seller = if rng.chance(3, 4) {
            last_person(n) / HOT_BLOCK * HOT_BLOCK
        } else {
            some_person(rng, n)
        };
        self.seller.append_value(seller as i64 + FIRST_ID);
        self.category.append_value(10 + rng.below(5) as i64);
        // Six numbers and two times of 8 bytes, the item's name and description.
        self.extra.append_value(extra(rng, 8 * 8 + 20 + 100, AUCTION_BYTES));
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.item.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.initial.finish()),
            Arc::new(self.reserve.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.expires.finish()),
            Arc::new(self.seller.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.extra.finish()),
        ];
        Ok(RecordBatch::try_new(auction_schema(), columns)?)
    }
}

struct BidBuilder {
    auction: Int64Builder,
    bidder: Int64Builder,
    price: Int64Builder,
    channel: StringBuilder,
    url: StringBuilder,
    time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl BidBuilder {
    fn with_capacity(n: usize) -> Self {
        BidBuilder {
            auction: Int64Builder::with_capacity(n),
            bidder: Int64Builder::with_capacity(n),
            price: Int64Builder::with_capacity(n),
            channel: StringBuilder::with_capacity(n, n * 12),
            url: StringBuilder::with_capacity(n, n * 80),
            time: TimestampMillisecondBuilder::with_capacity(n),
            extra: StringBuilder::with_capacity(n, n * BID_BYTES),
        }
    }

    fn add(&mut self, rng: &mut Rng, n: u64, time: i64) {
        let t = tables();
        // Hot auctions: one bid in two is on the current block's first auction.
        let auction = if rng.chance(1, 2) {
            last_auction(n) / HOT_BLOCK * HOT_BLOCK
        } else {
            some_auction(rng, n)
        };
        // Hot bidders: three bids in four are by the current block's second person.
        let bidder = if rng.chance(3, 4) {
            last_person(n) / HOT_BLOCK * HOT_BLOCK + 1
        } else {
            some_person(rng, n)
        };
        self.auction.append_value(auction as i64 + FIRST_ID);
        self.bidder.append_value(bidder as i64 + FIRST_ID);
        self.price.append_value(price(rng));
        let (channel, url) = if rng.chance(1, 2) {
            let k = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[k], t.hot_urls[k].as_str())
        } else {
            let k = rng.below(CHANNELS as u64) as usize;
            (t.channels[k].as_str(), t.urls[k].as_str())
        };
        self.channel.append_value(channel);
        self.url.append_value(url);
        self.time.append_value(time);
        // Four numbers of 8 bytes, the channel and the url.
        self.extra.append_value(extra(rng, 32 + channel.len() + url.len(), BID_BYTES));
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.auction.finish()),
            Arc::new(self.bidder.finish()),
            Arc::new(self.price.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.extra.finish()),
        ];
        Ok(RecordBatch::try_new(bid_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::Int64Type;

    fn generator(events: u64) -> Generator {
        Generator::new(NexmarkConfig { events, rate: 10_000 }).unwrap()
    }

    #[test]
    fn the_same_events_whatever_the_chunks() {
        let g = generator(10_000);
        let whole = g.events(0, 10_000).unwrap();
        let parts: Vec<Events> = [(0, 1), (1, 777), (777, 5000), (5000, 20_000)]
            .iter()
            .map(|(a, b)| g.events(*a, *b).unwrap())
            .collect();
        let cat = |f: fn(&Events) -> &RecordBatch, schema: SchemaRef| {
            let batches: Vec<RecordBatch> = parts.iter().map(|e| f(e).clone()).collect();
            concat_batches(&schema, &batches).unwrap()
        };
        assert_eq!(cat(|e| &e.person, person_schema()), whole.person);
        assert_eq!(cat(|e| &e.auction, auction_schema()), whole.auction);
        assert_eq!(cat(|e| &e.bid, bid_schema()), whole.bid);
        // 1 in 50 people, 3 in 50 auctions, 46 in 50 bids.
        assert_eq!(
            (whole.person.num_rows(), whole.auction.num_rows(), whole.bid.num_rows()),
            (200, 600, 9200)
        );
        // The bids alone are the same rows.
        assert_eq!(g.bids(777, 5000).unwrap(), parts[2].bid);
        assert_eq!(g.bids(0, 10_000).unwrap(), whole.bid);
        // Past the configured count: nothing.
        assert_eq!(g.events(10_000, 20_000).unwrap().bid.num_rows(), 0);
        // Each kind alone, from any event, and the event of each row.
        for (kind, batch) in [
            (Kind::Person, &whole.person),
            (Kind::Auction, &whole.auction),
            (Kind::Bid, &whole.bid),
        ] {
            assert_eq!(&g.rows(kind, 0, 10_000).unwrap(), batch, "{kind:?}");
            for from in [0, 1, 3, 4, 49, 50, 51, 777] {
                let k = kind.rows_in(from);
                let tail = g.rows(kind, from, 10_000).unwrap();
                assert_eq!(tail, batch.slice(k as usize, batch.num_rows() - k as usize));
                // The k-th row comes from the first event of the kind at or after `from`.
                let first = kind.event_of(k);
                assert!(
                    first >= from && kind.rows_in(first) == k && kind.rows_in(first + 1) == k + 1
                );
            }
            assert_eq!(kind.rows_in(10_000), batch.num_rows() as u64);
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!((Kind::Bid.event_of(0), Kind::Bid.event_of(46)), (4, 54));
        assert_eq!((Kind::Auction.event_of(2), Kind::Auction.event_of(3)), (3, 51));
        assert_eq!(Kind::Person.event_of(2), 100);
    }

    #[test]
    fn ids_times_and_keys_follow_the_rules() {
        let g = generator(100_000);
        let e = g.events(0, 100_000).unwrap();
        let people = e.person.column(0).as_primitive::<Int64Type>();
        assert_eq!(people.value(0), 1000);
        assert_eq!(people.value(1999), 2999);
        let auctions = e.auction.column(0).as_primitive::<Int64Type>();
        let ids: Vec<i64> = auctions.values().iter().take(6).copied().collect();
        assert_eq!(ids, vec![1000, 1001, 1002, 1003, 1004, 1005]);
        // Event n is at base + n / rate: the bid of event 4 at 0.4 ms, rounded down.
        let times = e
            .bid
            .column(5)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(times.value(0), BASE_TIME_MS);
        assert_eq!(g.time_ms(10_000), BASE_TIME_MS + 1000);
        // Every reference is to a person or an auction that exists by then or a few after.
        let bidders = e.bid.column(1).as_primitive::<Int64Type>();
        let bid_auctions = e.bid.column(0).as_primitive::<Int64Type>();
        let max_person = 1000 + 100_000 / 50 + PERSON_ID_LEAD as i64;
        let max_auction = 1000 + 100_000 * 3 / 50 + AUCTION_ID_LEAD as i64;
        assert!(bidders.values().iter().all(|b| (1000..=max_person).contains(b)));
        assert!(bid_auctions.values().iter().all(|a| (1000..=max_auction).contains(a)));
        // Hot keys: about half the bids go to a block's first auction.
        let hot = bid_auctions.values().iter().filter(|a| (*a - 1000) % 100 == 0).count();
        let share = hot as f64 / bid_auctions.len() as f64;
        assert!((0.45..0.6).contains(&share), "{share}");
        // Prices from 1 dollar to 10,000 dollars, in cents; states upper case.
        let prices = e.bid.column(2).as_primitive::<Int64Type>();
        assert!(prices.values().iter().all(|p| (100..=100_000_000).contains(p)));
        let states = e.person.column(5).as_string::<i32>();
        assert!(states.iter().all(|s| s.is_some_and(|s| STATES.contains(&s))));
        let categories = e.auction.column(8).as_primitive::<Int64Type>();
        assert!(categories.values().iter().all(|c| (10..15).contains(c)));
        let channels = e.bid.column(3).as_string::<i32>();
        let google = channels.iter().filter(|c| *c == Some("Google")).count();
        assert!(google > 0 && google < channels.len() / 4);
    }

    #[test]
    fn auction_ids_of_any_event() {
        // An auction event's own id, and the last auction before a person or a bid.
        assert_eq!(last_auction(1), 0);
        assert_eq!(last_auction(3), 2);
        assert_eq!(last_auction(49), 2);
        assert_eq!(last_auction(50), 2);
        assert_eq!(last_auction(51), 3);
        assert_eq!(last_auction(0), 2, "before any auction: clamped to the first epoch");
        assert!(Generator::new(NexmarkConfig { events: 1, rate: 0 }).is_err());
    }
}
