//! Prices: [`Price`], [`ModelPrice`] with context tiers and provenance, and the
//! [`PriceTable`] that finds them.

use foldhash::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::{Usage, Usd};

/// What tokens cost, per million.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Price {
    /// An uncached input token.
    pub input: Usd,
    /// A cached input token (defaults to the input price when a provider has no discount).
    #[serde(default)]
    pub cached_input: Option<Usd>,
    /// A token written to the prompt cache (Anthropic); defaults to the input price.
    #[serde(default)]
    pub cache_write: Option<Usd>,
    /// An output token (reasoning included).
    pub output: Usd,
}

impl Price {
    /// The cost of `usage` at this price.
    pub fn cost(&self, usage: &Usage) -> Usd {
        self.input.per_million(usage.input_tokens)
            + self
                .cached_input
                .unwrap_or(self.input)
                .per_million(usage.cached_input_tokens)
            + self
                .cache_write
                .unwrap_or(self.input)
                .per_million(usage.cache_write_tokens)
            + self.output.per_million(usage.output_tokens)
    }
}

/// A price that applies once a prompt is longer than `above_prompt_tokens` (long-context
/// pricing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PriceTier {
    /// The prompt size past which this tier applies.
    pub above_prompt_tokens: u64,
    /// The price.
    #[serde(flatten)]
    pub price: Price,
}

/// A model's prices and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelPrice {
    /// The model name; also matches dated variants (`gpt-4o` matches `gpt-4o-2024-08-06`).
    pub model: String,
    /// The provider.
    #[serde(default)]
    pub provider: String,
    /// The price for ordinary prompts.
    #[serde(flatten)]
    pub base: Price,
    /// Long-context prices, by prompt size.
    #[serde(default)]
    pub tiers: Vec<PriceTier>,
    /// Where the figures came from.
    #[serde(default)]
    pub source: String,
    /// When they were read (`2025-08`).
    #[serde(default)]
    pub as_of: String,
}

impl ModelPrice {
    /// The price for a prompt of `prompt_tokens`: the highest tier it passes, else the base.
    pub fn price_for(&self, prompt_tokens: u64) -> &Price {
        self.tiers
            .iter()
            .filter(|tier| prompt_tokens > tier.above_prompt_tokens)
            .max_by_key(|tier| tier.above_prompt_tokens)
            .map_or(&self.base, |tier| &tier.price)
    }

    /// The cost of `usage`.
    pub fn cost(&self, usage: &Usage) -> Usd {
        self.price_for(usage.prompt_tokens()).cost(usage)
    }
}

/// Where a cost figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CostSource {
    /// The provider said so in the response (xAI's `cost_in_usd_ticks`).
    Reported,
    /// Usage times the model's price from the table.
    Estimated,
    /// The model is not in the table: usage times the table's fallback price, so the figure is
    /// a deliberate over-estimate and a warning was logged.
    UnknownPrice,
    /// No usage to go by (a timeout, a caller that left, a 2xx that said nothing): the
    /// attempt's worst case, its prompt bound and output cap, as the budget settles it.
    WorstCase,
    /// A call Ballast has no reading of ([`Dialect::Other`](ballast_classify::Dialect::Other):
    /// moderations, audio, files, model lists) and no bound for
    /// ([`RequestFacts::has_bound`](ballast_classify::RequestFacts::has_bound): an image
    /// generation has one) whose answer reported no usage: charged nothing. Most such calls
    /// are free; one a provider bills by another unit (a speech's characters, a minute of
    /// audio) is not priced by Ballast, and is counted here so that it can be counted apart
    /// (a warning is logged once per model the table does not know).
    Unpriced,
}

impl CostSource {
    /// A stable `snake_case` name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Estimated => "estimated",
            Self::UnknownPrice => "unknown_price",
            Self::WorstCase => "worst_case",
            Self::Unpriced => "unpriced",
        }
    }
}

impl fmt::Display for CostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price file could not be read.
#[derive(Debug)]
pub struct PriceFileError(serde_json::Error);

impl fmt::Display for PriceFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid price file (expected {{\"models\": [{{\"model\", \"input\", \"output\", ...}}]}}): {}",
            self.0
        )
    }
}

impl std::error::Error for PriceFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(Deserialize)]
struct PriceFile {
    models: Vec<ModelPrice>,
}

/// The models Ballast knows the price of.
///
/// [`PriceTable::builtin`] holds current xAI, OpenAI, Anthropic and Gemini models, each with
/// its source and date (`prices.json` in this crate). Override or extend it from a JSON file
/// of the same shape ([`PriceTable::merge_json`]) or from code ([`PriceTable::insert`]).
///
/// A model not in the table is priced at the [fallback](Self::fallback) (by default the
/// dearest price in the table, so a budget errs on the safe side) and marked
/// [`CostSource::UnknownPrice`]; it is never silently free.
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: HashMap<String, Arc<ModelPrice>>,
    fallback: Price,
}

/// One model's prices as a call holds them from its estimate to its settlement: the
/// table's entry (shared, not copied) or the fallback.
///
/// ```
/// use ballast_cost::{CostSource, PriceTable, Usage};
///
/// let rate = PriceTable::builtin().rate(Some("grok-code-fast-1"));
/// let usage = Usage { input_tokens: 1_000, output_tokens: 500, ..Usage::default() };
/// assert_eq!(rate.cost(&usage).1, CostSource::Estimated);
/// assert_eq!(PriceTable::builtin().rate(Some("no-such-model")).cost(&usage).1, CostSource::UnknownPrice);
/// ```
#[derive(Debug, Clone)]
pub struct Rate {
    entry: Option<Arc<ModelPrice>>,
    fallback: Price,
}

impl Rate {
    /// The model's entry, or `None` when it is priced at the fallback.
    pub fn entry(&self) -> Option<&ModelPrice> {
        self.entry.as_deref()
    }

    /// The cost of `usage`, and where the figure came from, as [`PriceTable::cost`] says.
    pub fn cost(&self, usage: &Usage) -> (Usd, CostSource) {
        cost_at(self.entry.as_deref(), &self.fallback, usage)
    }
}

/// The reported cost, else usage at `entry`'s price, else at the fallback.
fn cost_at(entry: Option<&ModelPrice>, fallback: &Price, usage: &Usage) -> (Usd, CostSource) {
    if let Some(reported) = usage.reported_cost {
        return (reported, CostSource::Reported);
    }
    match entry {
        Some(price) => (price.cost(usage), CostSource::Estimated),
        None => (fallback.cost(usage), CostSource::UnknownPrice),
    }
}

const BUILTIN: &str = include_str!("prices.json");

impl PriceTable {
    /// An empty table, with `fallback` for unknown models.
    pub fn empty(fallback: Price) -> Self {
        Self {
            models: HashMap::default(),
            fallback,
        }
    }

    /// The built-in prices.
    pub fn builtin() -> Self {
        let mut table = Self::empty(Price::default());
        // The built-in file is part of this crate and tested; it cannot fail to parse.
        if let Ok(file) = serde_json::from_str::<PriceFile>(BUILTIN) {
            for model in file.models {
                table.insert(model);
            }
        }
        table.fallback = table.dearest();
        table
    }

    /// Adds or replaces entries from a JSON price file (`{"models": [...]}`, prices in
    /// dollars per million tokens as strings or numbers).
    pub fn merge_json(&mut self, json: &str) -> Result<(), PriceFileError> {
        let file: PriceFile = serde_json::from_str(json).map_err(PriceFileError)?;
        for model in file.models {
            self.insert(model);
        }
        Ok(())
    }

    /// Adds or replaces one entry.
    pub fn insert(&mut self, price: ModelPrice) {
        self.models.insert(price.model.clone(), Arc::new(price));
    }

    /// Sets the price used for unknown models.
    pub fn set_fallback(&mut self, fallback: Price) {
        self.fallback = fallback;
    }

    /// The price used for unknown models.
    pub fn fallback(&self) -> &Price {
        &self.fallback
    }

    /// The entry for `model`: an exact match, else the longest known name it starts with
    /// followed by `-` (a dated or suffixed variant).
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.entry(model).map(|price| &**price)
    }

    fn entry(&self, model: &str) -> Option<&Arc<ModelPrice>> {
        if let Some(found) = self.models.get(model) {
            return Some(found);
        }
        self.models
            .values()
            .filter(|p| {
                model
                    .strip_prefix(p.model.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|p| p.model.len())
    }

    /// The cost of `usage` for `model`, and where the figure came from: the reported cost
    /// when there is one, else usage times the model's price, else the fallback price.
    pub fn cost(&self, model: Option<&str>, usage: &Usage) -> (Usd, CostSource) {
        cost_at(model.and_then(|m| self.get(m)), &self.fallback, usage)
    }

    /// The prices for `model`, looked up once to cost a call before and after it (see
    /// [`Rate`]).
    pub fn rate(&self, model: Option<&str>) -> Rate {
        Rate {
            entry: model.and_then(|m| self.entry(m)).cloned(),
            fallback: self.fallback,
        }
    }

    /// Every entry.
    pub fn models(&self) -> impl Iterator<Item = &ModelPrice> {
        self.models.values().map(|price| &**price)
    }

    fn dearest(&self) -> Price {
        let mut dearest = Price::default();
        for price in self.models.values() {
            for p in std::iter::once(&price.base).chain(price.tiers.iter().map(|t| &t.price)) {
                dearest.input = dearest.input.max(p.input);
                dearest.output = dearest.output.max(p.output);
                dearest.cache_write = dearest.cache_write.max(p.cache_write.or(Some(p.input)));
            }
        }
        dearest.cached_input = Some(dearest.input);
        dearest
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn builtin_table_parses_and_every_entry_has_provenance() {
        let file: PriceFile = serde_json::from_str(BUILTIN).unwrap();
        assert!(file.models.len() >= 15);
        let table = PriceTable::builtin();
        for model in table.models() {
            assert!(
                !model.source.is_empty() && !model.as_of.is_empty(),
                "{}",
                model.model
            );
            // A moderation model is free; an embedding model bills its input only; an image
            // model billed by the image, its images only (priced over their bound).
            let free = model.model.contains("moderation");
            let by_the_image = ["dall-e-2", "dall-e-3", "grok-2-image"].contains(&&*model.model);
            let generates = !model.model.contains("embedding") && !free;
            assert_eq!(
                model.base.input > Usd::ZERO,
                !free && !by_the_image,
                "{}",
                model.model
            );
            assert_eq!(model.base.output > Usd::ZERO, generates, "{}", model.model);
        }
        let grok = table.get("grok-code-fast-1").unwrap();
        assert_eq!(grok.base.input, usd("0.20"));
        assert_eq!(grok.base.cached_input, Some(usd("0.02")));
        assert_eq!(grok.base.output, usd("1.50"));
    }

    #[test]
    fn cost_of_grok_code_fast_1() {
        let table = PriceTable::builtin();
        let usage = Usage {
            input_tokens: 1_000,
            cached_input_tokens: 4_000,
            output_tokens: 2_000,
            ..Usage::default()
        };
        // 1000 x 0.20 + 4000 x 0.02 + 2000 x 1.50, per million.
        let (cost, source) = table.cost(Some("grok-code-fast-1"), &usage);
        assert_eq!(cost, usd("0.00328"));
        assert_eq!(source, CostSource::Estimated);
    }

    #[test]
    fn reported_cost_wins_and_unknown_models_are_never_free() {
        let table = PriceTable::builtin();
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 100,
            reported_cost: Some(Usd::from_xai_ticks(12345)),
            ..Usage::default()
        };
        assert_eq!(
            table.cost(Some("grok-code-fast-1"), &usage),
            (Usd::from_xai_ticks(12345), CostSource::Reported)
        );
        let usage = Usage {
            reported_cost: None,
            ..usage
        };
        let (cost, source) = table.cost(Some("mystery-model"), &usage);
        assert_eq!(source, CostSource::UnknownPrice);
        let (known, _) = table.cost(Some("claude-opus-4-1"), &usage);
        assert!(
            cost >= known && cost > Usd::ZERO,
            "fallback is the dearest price"
        );
        assert_eq!(table.cost(None, &usage).1, CostSource::UnknownPrice);
    }

    #[test]
    fn dated_variants_and_tiers() {
        let table = PriceTable::builtin();
        assert_eq!(table.get("gpt-4o-2024-08-06").unwrap().model, "gpt-4o");
        assert_eq!(
            table.get("gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(
            table.get("claude-sonnet-4-5-20250929").unwrap().model,
            "claude-sonnet-4-5"
        );
        assert!(table.get("gpt-4").is_none());
        let sonnet = table.get("claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.price_for(200_000).input, usd("3.00"));
        assert_eq!(sonnet.price_for(200_001).input, usd("6.00"));
    }

    #[test]
    fn overrides_from_a_file() {
        let mut table = PriceTable::builtin();
        table
            .merge_json(r#"{"models":[{"model":"grok-code-fast-1","input":"0.25","output":2,"source":"contract","as_of":"2026-11"},{"model":"local-llama","input":"0","output":"0","source":"self-hosted","as_of":"2026-11"}]}"#)
            .unwrap();
        assert_eq!(table.get("grok-code-fast-1").unwrap().base.output, usd("2"));
        assert_eq!(table.get("local-llama").unwrap().base.input, Usd::ZERO);
        let err = table
            .merge_json(r#"{"models":[{"model":"x","input":"-1","output":"1"}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("not a dollar amount"), "{err}");
        assert!(table.merge_json("{").is_err());
    }
}
