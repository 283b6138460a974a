//! Word lists and text templates: the catalogue, search queries and review texts.

use rand::Rng;
use rand::seq::IndexedRandom;

/// One leaf category of the demo catalogue.
pub(crate) struct Category {
    pub path: [&'static str; 2],
    /// Product types sold in the category (title nouns).
    pub items: &'static [&'static str],
    pub brands: &'static [&'static str],
    pub adjectives: &'static [&'static str],
    /// Description fragments.
    pub features: &'static [&'static str],
    /// What reviews talk about.
    pub aspects: &'static [&'static str],
    pub colors: &'static [&'static str],
    /// Median price in EUR and log-scale spread.
    pub median_price: f64,
    pub price_sigma: f64,
    /// Share of traffic the category attracts overall.
    pub popularity: f64,
    /// Extra demand around Christmas and in summer (relative; negative is a dip).
    pub xmas: f64,
    pub summer: f64,
    /// Consumables: customers often buy more than one.
    pub multi_unit: bool,
    /// Index of the category whose products complement this one (bought together).
    pub complement: usize,
}

pub(crate) const CATEGORIES: &[Category] = &[
    Category {
        path: ["Electronics", "Headphones"],
        items: &[
            "Wireless Headphones",
            "Earbuds",
            "Over-Ear Headphones",
            "Sports Earphones",
        ],
        brands: &["Sonora", "AudioPeak", "Bassline", "Clarion"],
        adjectives: &["Noise-Cancelling", "Bluetooth", "Foldable", "Studio"],
        features: &[
            "30-hour battery life",
            "active noise cancelling",
            "USB-C fast charging",
            "multipoint Bluetooth 5.3",
            "soft memory-foam cushions",
        ],
        aspects: &["sound", "battery", "fit", "noise cancelling", "connection"],
        colors: &["black", "white", "navy", "silver"],
        median_price: 79.0,
        price_sigma: 0.55,
        popularity: 1.0,
        xmas: 0.6,
        summer: 0.0,
        multi_unit: false,
        complement: 1,
    },
    Category {
        path: ["Electronics", "Smartphones"],
        items: &["Smartphone", "Phone", "Compact Phone"],
        brands: &["Novaphone", "Pixelon", "Zentek", "Orbit"],
        adjectives: &["5G", "Dual-SIM", "Pro", "Lite"],
        features: &[
            "6.5-inch OLED display",
            "triple camera",
            "128 GB storage",
            "all-day battery",
            "water resistant",
        ],
        aspects: &["camera", "battery", "screen", "performance", "software"],
        colors: &["black", "blue", "green", "silver"],
        median_price: 399.0,
        price_sigma: 0.5,
        popularity: 0.55,
        xmas: 0.5,
        summer: 0.0,
        multi_unit: false,
        complement: 0,
    },
    Category {
        path: ["Electronics", "Cameras"],
        items: &[
            "Mirrorless Camera",
            "Action Camera",
            "Compact Camera",
            "Instant Camera",
        ],
        brands: &["Optiva", "ShutterPro", "Kamero", "Vistar"],
        adjectives: &["4K", "Waterproof", "Travel", "Vlogging"],
        features: &[
            "24-megapixel sensor",
            "image stabilisation",
            "4K video",
            "weather sealing",
            "fast autofocus",
        ],
        aspects: &["image quality", "autofocus", "battery", "zoom", "build"],
        colors: &["black", "silver", "grey"],
        median_price: 349.0,
        price_sigma: 0.6,
        popularity: 0.35,
        xmas: 0.4,
        summer: 0.25,
        multi_unit: false,
        complement: 3,
    },
    Category {
        path: ["Computers", "Accessories"],
        items: &[
            "Keyboard",
            "Wireless Mouse",
            "USB-C Hub",
            "Webcam",
            "Monitor Stand",
        ],
        brands: &["Keyra", "Logimax", "Portline", "Deskly"],
        adjectives: &["Ergonomic", "Mechanical", "Compact", "Wireless"],
        features: &[
            "plug and play",
            "aluminium housing",
            "rechargeable battery",
            "works with Windows and macOS",
            "silent keys",
        ],
        aspects: &["build quality", "comfort", "connection", "size", "value"],
        colors: &["black", "grey", "white"],
        median_price: 35.0,
        price_sigma: 0.6,
        popularity: 0.9,
        xmas: 0.2,
        summer: 0.0,
        multi_unit: false,
        complement: 2,
    },
    Category {
        path: ["Home & Kitchen", "Coffee Machines"],
        items: &[
            "Espresso Machine",
            "Filter Coffee Maker",
            "Milk Frother",
            "Coffee Grinder",
        ],
        brands: &["Brewmaster", "Crema", "Kaffeo", "Morning Co"],
        adjectives: &["Automatic", "Compact", "Barista", "Classic"],
        features: &[
            "15-bar pump",
            "removable water tank",
            "auto shut-off",
            "stainless steel",
            "easy to descale",
        ],
        aspects: &["coffee", "noise", "cleaning", "design", "build"],
        colors: &["black", "silver", "red", "cream"],
        median_price: 129.0,
        price_sigma: 0.6,
        popularity: 0.5,
        xmas: 0.5,
        summer: -0.1,
        multi_unit: false,
        complement: 5,
    },
    Category {
        path: ["Home & Kitchen", "Cookware"],
        items: &[
            "Frying Pan",
            "Saucepan",
            "Knife Set",
            "Casserole Dish",
            "Wok",
        ],
        brands: &["Ferro", "Cucina", "Panhaus", "Steelcraft"],
        adjectives: &["Non-Stick", "Cast Iron", "Stainless", "Induction"],
        features: &[
            "oven safe up to 250 C",
            "dishwasher safe",
            "induction compatible",
            "PFAS-free coating",
            "ergonomic handle",
        ],
        aspects: &[
            "coating",
            "handle",
            "heat distribution",
            "weight",
            "cleaning",
        ],
        colors: &["black", "grey", "copper", "red"],
        median_price: 39.0,
        price_sigma: 0.5,
        popularity: 0.8,
        xmas: 0.3,
        summer: 0.0,
        multi_unit: false,
        complement: 4,
    },
    Category {
        path: ["Fashion", "Shoes"],
        items: &["Sneakers", "Running Shoes", "Boots", "Sandals", "Loafers"],
        brands: &["Strider", "Urbanfoot", "Kestrel", "Nomad"],
        adjectives: &["Lightweight", "Leather", "Everyday", "Trail"],
        features: &[
            "cushioned sole",
            "breathable mesh",
            "genuine leather",
            "recycled materials",
            "non-slip outsole",
        ],
        aspects: &["fit", "comfort", "size", "material", "sole"],
        colors: &["black", "white", "brown", "blue", "grey"],
        median_price: 79.0,
        price_sigma: 0.4,
        popularity: 1.0,
        xmas: 0.1,
        summer: 0.3,
        multi_unit: false,
        complement: 7,
    },
    Category {
        path: ["Fashion", "Jackets"],
        items: &[
            "Rain Jacket",
            "Down Jacket",
            "Denim Jacket",
            "Softshell Jacket",
        ],
        brands: &["Northway", "Kestrel", "Harbour", "Alpin"],
        adjectives: &["Waterproof", "Insulated", "Packable", "Classic"],
        features: &[
            "waterproof zips",
            "recycled down",
            "adjustable hood",
            "two-way stretch",
            "packs into its own pocket",
        ],
        aspects: &["fit", "warmth", "material", "zip", "size"],
        colors: &["black", "olive", "navy", "red"],
        median_price: 119.0,
        price_sigma: 0.5,
        popularity: 0.6,
        xmas: 0.5,
        summer: -0.6,
        multi_unit: false,
        complement: 6,
    },
    Category {
        path: ["Sports", "Fitness"],
        items: &[
            "Yoga Mat",
            "Dumbbell Set",
            "Resistance Bands",
            "Kettlebell",
            "Jump Rope",
        ],
        brands: &["Flexo", "IronFit", "Corely", "Pulse"],
        adjectives: &["Adjustable", "Non-Slip", "Pro", "Home"],
        features: &[
            "non-slip surface",
            "includes carry bag",
            "adjustable weight",
            "latex-free",
            "exercise guide included",
        ],
        aspects: &["grip", "material", "weight", "size", "durability"],
        colors: &["black", "purple", "teal", "grey"],
        median_price: 29.0,
        price_sigma: 0.7,
        popularity: 0.8,
        xmas: -0.2,
        summer: 0.4,
        multi_unit: false,
        complement: 6,
    },
    Category {
        path: ["Beauty", "Skincare"],
        items: &["Face Cream", "Serum", "Cleanser", "Sunscreen", "Lip Balm"],
        brands: &["Luma", "Verde", "Purelle", "Dermix"],
        adjectives: &["Hydrating", "Gentle", "Vitamin C", "Night"],
        features: &[
            "fragrance-free",
            "for sensitive skin",
            "vegan formula",
            "SPF 30",
            "dermatologically tested",
        ],
        aspects: &["texture", "scent", "effect", "packaging", "value"],
        colors: &["white", "green", "pink"],
        median_price: 18.0,
        price_sigma: 0.5,
        popularity: 1.2,
        xmas: 0.3,
        summer: 0.2,
        multi_unit: true,
        complement: 9,
    },
    Category {
        path: ["Books", "Fiction"],
        items: &[
            "Novel",
            "Thriller",
            "Fantasy Novel",
            "Short Stories",
            "Crime Novel",
        ],
        brands: &["Quill Press", "Harbor Books", "Lantern", "Inkwell"],
        adjectives: &["Bestselling", "Award-Winning", "Paperback", "Illustrated"],
        features: &[
            "paperback edition",
            "420 pages",
            "book one of a trilogy",
            "translated into 30 languages",
            "includes reading guide",
        ],
        aspects: &["story", "characters", "ending", "writing", "print"],
        colors: &["paperback", "hardcover"],
        median_price: 14.0,
        price_sigma: 0.3,
        popularity: 1.1,
        xmas: 0.4,
        summer: 0.3,
        multi_unit: true,
        complement: 10,
    },
    Category {
        path: ["Toys", "Building Sets"],
        items: &[
            "Building Set",
            "Construction Kit",
            "Marble Run",
            "Robot Kit",
        ],
        brands: &["Brixo", "Buildy", "Kidcraft", "Tinkerly"],
        adjectives: &["Creative", "Deluxe", "Starter", "Motorised"],
        features: &[
            "500 pieces",
            "for ages 8 and up",
            "compatible with other sets",
            "step-by-step instructions",
            "includes motor",
        ],
        aspects: &["pieces", "instructions", "fun", "box", "value"],
        colors: &["multicolour", "blue", "red"],
        median_price: 39.0,
        price_sigma: 0.6,
        popularity: 0.6,
        xmas: 1.6,
        summer: -0.2,
        multi_unit: false,
        complement: 11,
    },
];

pub(crate) const COUNTRIES: &[(&str, f64)] = &[
    ("DE", 0.34),
    ("FR", 0.2),
    ("NL", 0.12),
    ("ES", 0.12),
    ("IT", 0.11),
    ("AT", 0.06),
    ("BE", 0.05),
];

/// Billing countries seen on planted fraud (far from the shipping address).
pub(crate) const FOREIGN_COUNTRIES: &[&str] = &["US", "GB", "CA", "BR", "TR", "ZA", "AU", "SG"];

pub(crate) const CHANNELS: &[(&str, f64)] = &[
    ("search", 0.4),
    ("social", 0.25),
    ("referral", 0.15),
    ("email", 0.2),
];

pub(crate) const AGE_BANDS: &[(&str, f64)] = &[
    ("18-24", 0.14),
    ("25-34", 0.3),
    ("35-44", 0.25),
    ("45-54", 0.17),
    ("55+", 0.14),
];

pub(crate) const PAYMENT_METHODS: &[(&str, f64)] =
    &[("card", 0.55), ("paypal", 0.3), ("invoice", 0.15)];

/// Relative shopping activity per hour of day (UTC, roughly CET evenings).
pub(crate) const HOURS: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1, 1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.4,
    1.7, 1.9, 1.8, 1.3, 0.7,
];

/// Relative demand Monday..Sunday.
pub(crate) const WEEKDAYS: [f64; 7] = [0.92, 0.9, 0.93, 0.97, 1.03, 1.2, 1.25];

fn pick<'a, R: Rng>(rng: &mut R, xs: &'a [&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or("")
}

/// Product title and description.
pub(crate) fn product_text<R: Rng>(
    rng: &mut R,
    cat: &Category,
    item: &str,
    brand: &str,
    color: &str,
) -> (String, String) {
    let adjective = pick(rng, cat.adjectives);
    let model = match rng.random_range(0..3) {
        0 => format!(
            "{}{}",
            pick(rng, &["X", "S", "M", "Q", "Z"]),
            rng.random_range(1..10) * 100
        ),
        1 => pick(rng, &["Air", "Max", "One", "Plus", "Go", "Edge", "Neo"]).to_string(),
        _ => format!("{}", rng.random_range(2..9)),
    };
    let title = format!("{brand} {adjective} {item} {model}");
    let mut features: Vec<&str> = cat.features.to_vec();
    let mut chosen = Vec::new();
    for _ in 0..2 {
        if features.is_empty() {
            break;
        }
        let i = rng.random_range(0..features.len());
        chosen.push(features.swap_remove(i));
    }
    let description = format!(
        "{adjective} {item} from {brand} in {color}. {}.",
        capitalise(&chosen.join(", "))
    );
    (title, description)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A search query a shopper for `item` in `cat` might type.
pub(crate) fn search_query<R: Rng>(rng: &mut R, cat: &Category, item: &str, brand: &str) -> String {
    let item = item.to_lowercase();
    match rng.random_range(0..6) {
        0 => format!("{} {item}", pick(rng, cat.adjectives).to_lowercase()),
        1 => format!("{} {item}", brand.to_lowercase()),
        2 => format!("{item} under {}", (cat.median_price / 10.0).ceil() * 10.0),
        3 => format!("best {item}"),
        4 => format!("{item} {}", pick(rng, cat.colors)),
        _ => item,
    }
}

/// The tone a review text is written in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tone {
    Positive,
    Neutral,
    Negative,
}

impl Tone {
    pub(crate) fn of_rating(rating: i32) -> Self {
        match rating {
            4..=5 => Tone::Positive,
            3 => Tone::Neutral,
            _ => Tone::Negative,
        }
    }
}

const POS_TITLES: &[&str] = &[
    "Love it",
    "Excellent {noun}",
    "Great value",
    "Exactly as described",
    "Highly recommended",
    "Very happy with my {noun}",
    "Does everything I wanted",
    "Better than expected",
];
const NEU_TITLES: &[&str] = &[
    "Okay for the price",
    "Decent but not perfect",
    "Does the job",
    "Mixed feelings",
    "Average {noun}",
];
const NEG_TITLES: &[&str] = &[
    "Disappointed",
    "Not worth the money",
    "Poor quality {noun}",
    "Would not buy again",
    "Broke too quickly",
    "Returned it",
];
const POS_ADJ: &[&str] = &[
    "excellent",
    "great",
    "really good",
    "fantastic",
    "very solid",
    "impressive",
];
const NEG_ADJ: &[&str] = &[
    "poor",
    "disappointing",
    "really bad",
    "flimsy",
    "terrible",
    "below average",
];
const POS_SENTENCES: &[&str] = &[
    "Delivery was fast and everything was well packed.",
    "Works exactly as described.",
    "I have been using it for {weeks} weeks now and I am very happy.",
    "Great value for money.",
    "Would definitely buy from {brand} again.",
    "My partner liked it so much that we ordered a second one.",
    "Setup took two minutes.",
];
const NEU_SENTENCES: &[&str] = &[
    "It does what it should, nothing more.",
    "Fine for the price, but I expected a bit more.",
    "Delivery took longer than promised.",
    "Some small issues, but overall acceptable.",
];
const NEG_SENTENCES: &[&str] = &[
    "It stopped working after {weeks} weeks.",
    "Not worth the money at all.",
    "Customer service did not help.",
    "Much worse than the pictures suggest.",
    "I sent it back and asked for a refund.",
    "Arrived damaged and the box was open.",
];

fn fill(template: &str, noun: &str, brand: &str, weeks: u32) -> String {
    template
        .replace("{noun}", noun)
        .replace("{brand}", brand)
        .replace("{weeks}", &weeks.to_string())
}

/// "is" or "are" for an aspect noun ("the pieces are", "the battery is").
fn verb(noun: &str) -> &'static str {
    if noun.ends_with('s') && !noun.ends_with("ss") {
        "are"
    } else {
        "is"
    }
}

/// Title and text of a genuine-looking review in `tone`.
pub(crate) fn review_text<R: Rng>(
    rng: &mut R,
    cat: &Category,
    item: &str,
    brand: &str,
    tone: Tone,
) -> (String, String) {
    let noun = item.to_lowercase();
    let weeks = rng.random_range(2..12);
    let (titles, sentences) = match tone {
        Tone::Positive => (POS_TITLES, POS_SENTENCES),
        Tone::Neutral => (NEU_TITLES, NEU_SENTENCES),
        Tone::Negative => (NEG_TITLES, NEG_SENTENCES),
    };
    let title = capitalise(&fill(pick(rng, titles), &noun, brand, weeks));
    let aspect = pick(rng, cat.aspects);
    let is = verb(aspect);
    let mut parts = vec![match tone {
        Tone::Positive => format!("The {aspect} {is} {}.", pick(rng, POS_ADJ)),
        Tone::Neutral => format!("The {aspect} {is} okay but nothing special."),
        Tone::Negative => format!("The {aspect} {is} {}.", pick(rng, NEG_ADJ)),
    }];
    let n = rng.random_range(1..4);
    let mut pool: Vec<&str> = sentences.to_vec();
    for _ in 0..n {
        if pool.is_empty() {
            break;
        }
        let i = rng.random_range(0..pool.len());
        parts.push(fill(pool.swap_remove(i), &noun, brand, weeks));
    }
    if rng.random_bool(0.3) {
        let second = pick(rng, cat.aspects);
        if second != aspect {
            let is = verb(second);
            parts.push(match tone {
                Tone::Positive => format!("Also the {second} {is} {}.", pick(rng, POS_ADJ)),
                Tone::Neutral => format!("The {second} could be better."),
                Tone::Negative => format!("And the {second} {is} {}.", pick(rng, NEG_ADJ)),
            });
        }
    }
    (title, parts.join(" "))
}

/// Near-duplicate promotional praise: one template family, small variations.
pub(crate) fn spam_duplicate<R: Rng>(rng: &mut R, item: &str) -> (String, String) {
    let opener = pick(rng, &["Best", "Greatest", "Top"]);
    let whom = pick(rng, &["everyone", "all my friends", "everybody"]);
    let bangs = "!".repeat(rng.random_range(2..5));
    let text = format!(
        "{opener} {} ever{bangs} I recommend this to {whom}, amazing quality and super fast shipping. 5 stars{bangs}",
        item.to_lowercase()
    );
    let title = format!("{opener} product ever{bangs}");
    (title, text)
}

/// Short, generic 5-star praise (rating bursts).
pub(crate) fn spam_burst<R: Rng>(rng: &mut R, item: &str) -> (String, String) {
    let title = pick(
        rng,
        &["Amazing!!!", "Perfect", "Five stars", "Must buy", "WOW"],
    )
    .to_string();
    let text = match rng.random_range(0..5) {
        0 => "Perfect product, five stars, fast delivery!!!".to_string(),
        1 => format!("Love love love this {}!", item.to_lowercase()),
        2 => "Best purchase ever. Highly recommend!!!".to_string(),
        3 => "Excellent excellent excellent. Buy it now!".to_string(),
        _ => format!(
            "Amazing {}, exceeded all expectations!!!",
            item.to_lowercase()
        ),
    };
    (title, text)
}

/// Promotional text with a link.
pub(crate) fn spam_link<R: Rng>(
    rng: &mut R,
    item: &str,
    brand: &str,
    code: &str,
) -> (String, String) {
    let title = pick(
        rng,
        &["Cheaper here", "Great deal", "Discount inside", "Save 70%"],
    )
    .to_string();
    let text = match rng.random_range(0..3) {
        0 => format!(
            "Good {} but I found it 70% cheaper at http://cheap-deals.example/{code} - check it out!",
            item.to_lowercase()
        ),
        1 => format!(
            "Visit http://cheap-deals.example for huge discounts on {brand} products!!! Use code SAVE80."
        ),
        _ => format!(
            "Why pay full price? Get your {} at http://best-price.example/{code} today.",
            item.to_lowercase()
        ),
    };
    (title, text)
}
