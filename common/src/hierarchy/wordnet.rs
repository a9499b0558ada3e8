//! The WordNet 3.0 noun database (`data.noun`, `index.noun`), read directly.
//!
//! An ImageNet class id such as `n02084071` is `n` + the synset's byte offset in `data.noun`;
//! the line at that offset is the synset (`offset lex_filenum ss_type w_cnt word lex_id …
//! p_cnt pointer… | gloss`). Hypernyms are `@` pointers, instance hypernyms `@i`. Names such
//! as `dog.n.01` (NLTK's) are a lemma plus the synset's sense number for that lemma, which is
//! its position in the lemma's line of `index.noun`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{HierarchyError, Result};

/// Where Debian's `wordnet-base` puts the database.
pub const DEFAULT_WORDNET_DIR: &str = "/usr/share/wordnet";

/// Environment variable that overrides [`DEFAULT_WORDNET_DIR`].
pub const WORDNET_ENV: &str = "HINT_WORDNET";

/// One noun synset of `data.noun`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synset {
    /// Byte offset in `data.noun` (the number in `n02084071`).
    pub offset: u32,
    /// Its words, as written in `data.noun` (`Siberian_husky`).
    pub lemmas: Vec<String>,
    /// Offsets of its hypernyms (`@`).
    pub hypernyms: Vec<u32>,
    /// Offsets of its instance hypernyms (`@i`).
    pub instance_hypernyms: Vec<u32>,
    /// Its definition and examples.
    pub gloss: String,
}

/// The WordNet noun database, loaded into memory.
#[derive(Debug)]
pub struct WordNet {
    dir: PathBuf,
    data: String,
    /// Lemma (lower case) → synset offsets in sense-number order.
    index: HashMap<String, Vec<u32>>,
}

/// Whether `label` looks like a WordNet noun id: `n` + 8 digits.
pub fn is_wordnet_id(label: &str) -> bool {
    parse_id(label).is_some()
}

/// The offset of a WordNet noun id `n02084071`.
pub(crate) fn parse_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix('n')?;
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The id `n02084071` of a noun offset.
pub(crate) fn format_id(offset: u32) -> String {
    format!("n{offset:08}")
}

impl WordNet {
    /// The directory to read: `$HINT_WORDNET` if set, else [`DEFAULT_WORDNET_DIR`].
    pub fn default_dir() -> PathBuf {
        std::env::var_os(WORDNET_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_WORDNET_DIR), PathBuf::from)
    }

    /// Reads `data.noun` and `index.noun` from `dir`. A missing file is
    /// [`HierarchyError::WordNetMissing`], which says how to install them.
    pub fn open(dir: &Path) -> Result<WordNet> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    HierarchyError::WordNetMissing { path }
                } else {
                    HierarchyError::Io { path, source }
                }
            })
        };
        let data = read("data.noun")?;
        let index_text = read("index.noun")?;
        let index = parse_index(&dir.join("index.noun"), &index_text)?;
        Ok(WordNet {
            dir: dir.to_path_buf(),
            data,
            index,
        })
    }

    /// The directory the database was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The synset at `offset` of `data.noun`.
    pub fn synset(&self, offset: u32) -> Result<Synset> {
        let start = offset as usize;
        let id = format_id(offset);
        let at_line_start = start == 0 || self.data.as_bytes().get(start - 1) == Some(&b'\n');
        if start >= self.data.len() || !at_line_start {
            return Err(HierarchyError::UnknownSynset(format!(
                "{id}: no synset starts at byte {offset} of {}",
                self.data_path().display()
            )));
        }
        let rest = &self.data[start..];
        let line = rest.split('\n').next().unwrap_or_default();
        let synset = parse_synset(line).map_err(|problem| HierarchyError::MalformedWordNet {
            path: self.data_path(),
            line: line_number(&self.data, start),
            problem,
        })?;
        if synset.offset != offset {
            return Err(HierarchyError::UnknownSynset(format!(
                "{id}: the line at byte {offset} of {} is synset {}",
                self.data_path().display(),
                format_id(synset.offset)
            )));
        }
        Ok(synset)
    }

    /// The synset of a noun id such as `n02084071`.
    pub fn synset_by_id(&self, id: &str) -> Result<Synset> {
        let offset = parse_id(id).ok_or_else(|| {
            HierarchyError::UnknownSynset(format!("{id:?} is not a WordNet noun id like n02084071"))
        })?;
        self.synset(offset)
    }

    /// The sense number (1-based) of `synset` for `lemma`, from `index.noun`.
    fn sense_number(&self, lemma: &str, offset: u32) -> Result<usize> {
        let key = lemma.to_lowercase();
        self.index
            .get(&key)
            .and_then(|offsets| offsets.iter().position(|&o| o == offset))
            .map(|p| p + 1)
            .ok_or_else(|| HierarchyError::MalformedWordNet {
                path: self.dir.join("index.noun"),
                line: 0,
                problem: format!("no entry for {key} with synset {}", format_id(offset)),
            })
    }

    /// The synset's NLTK-style name: its first lemma in lower case, `.n.`, its sense number
    /// for that lemma (`dog.n.01`).
    pub fn name_of(&self, synset: &Synset) -> Result<String> {
        let lemma = synset
            .lemmas
            .first()
            .ok_or_else(|| HierarchyError::MalformedWordNet {
                path: self.data_path(),
                line: line_number(&self.data, synset.offset as usize),
                problem: "synset without words".into(),
            })?;
        Ok(format!(
            "{}.n.{:02}",
            lemma.to_lowercase(),
            self.sense_number(lemma, synset.offset)?
        ))
    }

    /// Every name a user may give the synset by: each lemma in lower case and its
    /// `lemma.n.NN` name.
    pub fn aliases(&self, synset: &Synset) -> Result<Vec<String>> {
        let mut aliases = Vec::with_capacity(2 * synset.lemmas.len());
        for lemma in &synset.lemmas {
            let lower = lemma.to_lowercase();
            let sense = self.sense_number(lemma, synset.offset)?;
            aliases.push(format!("{lower}.n.{sense:02}"));
            aliases.push(lower);
        }
        aliases.dedup();
        Ok(aliases)
    }

    /// The synsets a name stands for: an id (`n02084071`), a name (`dog.n.01`, any lemma of
    /// the synset), or a lemma (`dog`: every noun sense, in sense order). Empty if unknown.
    pub fn lookup(&self, name: &str) -> Vec<u32> {
        if let Some(offset) = parse_id(name) {
            return if self.synset(offset).is_ok() {
                vec![offset]
            } else {
                Vec::new()
            };
        }
        let lower = name.to_lowercase();
        if let Some((lemma, sense)) = split_name(&lower) {
            return self
                .index
                .get(lemma)
                .and_then(|offsets| offsets.get(sense.wrapping_sub(1)))
                .map(|&o| vec![o])
                .unwrap_or_default();
        }
        self.index.get(&lower).cloned().unwrap_or_default()
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join("data.noun")
    }
}

/// Splits `dog.n.01` into (`dog`, 1).
fn split_name(name: &str) -> Option<(&str, usize)> {
    let (lemma, sense) = name.rsplit_once(".n.")?;
    if sense.is_empty() || !sense.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((lemma, sense.parse().ok()?))
}

/// The 1-based line number of byte `pos` of `text`.
fn line_number(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses one line of `data.noun`.
fn parse_synset(line: &str) -> std::result::Result<Synset, String> {
    let (fields, gloss) = line.split_once(" | ").unwrap_or((line, ""));
    let mut tokens = fields.split_ascii_whitespace();
    let mut next = |what: &str| {
        tokens
            .next()
            .ok_or_else(|| format!("line ends before {what}"))
    };
    let offset: u32 = next("the offset")?
        .parse()
        .map_err(|_| "the line does not start with a synset offset".to_string())?;
    let _lex_filenum = next("lex_filenum")?;
    let ss_type = next("ss_type")?;
    if ss_type != "n" {
        return Err(format!("ss_type {ss_type:?}, expected n (a noun)"));
    }
    let w_cnt = next("w_cnt")?;
    let w_cnt = usize::from_str_radix(w_cnt, 16)
        .map_err(|_| format!("w_cnt {w_cnt:?} is not hexadecimal"))?;
    let mut lemmas = Vec::with_capacity(w_cnt);
    for _ in 0..w_cnt {
        lemmas.push(next("a word")?.to_string());
        next("a lex_id")?;
    }
    let p_cnt = next("p_cnt")?;
    let p_cnt: usize = p_cnt
        .parse()
        .map_err(|_| format!("p_cnt {p_cnt:?} is not a number"))?;
    let (mut hypernyms, mut instance_hypernyms) = (Vec::new(), Vec::new());
    for _ in 0..p_cnt {
        let symbol = next("a pointer symbol")?;
        let target = next("a pointer offset")?;
        let pos = next("a pointer part of speech")?;
        next("a pointer source/target")?;
        let list = match symbol {
            "@" => &mut hypernyms,
            "@i" => &mut instance_hypernyms,
            _ => continue,
        };
        if pos != "n" {
            return Err(format!("hypernym pointer to part of speech {pos:?}"));
        }
        list.push(
            target
                .parse()
                .map_err(|_| format!("pointer offset {target:?} is not a number"))?,
        );
    }
    Ok(Synset {
        offset,
        lemmas,
        hypernyms,
        instance_hypernyms,
        gloss: gloss.trim().to_string(),
    })
}

/// Parses `index.noun`: `lemma pos synset_cnt p_cnt ptr… sense_cnt tagsense_cnt offset…`.
fn parse_index(path: &Path, text: &str) -> Result<HashMap<String, Vec<u32>>> {
    let mut index = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        // The licence header's lines start with two spaces.
        if line.starts_with(' ') || line.is_empty() {
            continue;
        }
        let bad = |problem: String| HierarchyError::MalformedWordNet {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        if tokens.len() < 4 {
            return Err(bad("fewer than 4 fields".into()));
        }
        let synset_cnt: usize = tokens[2]
            .parse()
            .map_err(|_| bad(format!("synset_cnt {:?} is not a number", tokens[2])))?;
        if tokens.len() < 4 + synset_cnt + 2 {
            return Err(bad(format!("{synset_cnt} synsets announced, fewer given")));
        }
        let offsets = tokens[tokens.len() - synset_cnt..]
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|_| bad(format!("synset offset {t:?} is not a number")))
            })
            .collect::<Result<Vec<u32>>>()?;
        index.insert(tokens[0].to_string(), offsets);
    }
    Ok(index)
}
