//! HTML assertions with CSS selectors, as a user would read the page.
#![allow(dead_code)]

use scraper::{Html, Selector};

pub struct Page {
    pub doc: Html,
    pub source: String,
}

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css}: {e:?}"))
}

impl Page {
    pub fn new(source: &str) -> Page {
        Page {
            doc: Html::parse_document(source),
            source: source.to_string(),
        }
    }

    pub fn exists(&self, css: &str) -> bool {
        self.doc.select(&sel(css)).next().is_some()
    }

    pub fn count(&self, css: &str) -> usize {
        self.doc.select(&sel(css)).count()
    }

    /// The text of the first match, whitespace folded.
    pub fn text(&self, css: &str) -> String {
        self.doc
            .select(&sel(css))
            .next()
            .map(|e| e.text().collect::<Vec<_>>().join(" "))
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no element matches {css} in:\n{}", self.source))
    }

    pub fn texts(&self, css: &str) -> Vec<String> {
        self.doc
            .select(&sel(css))
            .map(|e| {
                e.text()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.doc
            .select(&sel(css))
            .next()
            .and_then(|e| e.value().attr(name))
            .map(str::to_string)
    }

    /// Every input, select and textarea has a label (or an aria-label).
    pub fn unlabelled_inputs(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for e in self.doc.select(&sel("input, select, textarea")) {
            let v = e.value();
            if matches!(v.attr("type"), Some("hidden") | Some("submit")) {
                continue;
            }
            let id = v.attr("id").unwrap_or("");
            let labelled = v.attr("aria-label").is_some()
                || (!id.is_empty() && self.exists(&format!("label[for=\"{id}\"]")))
                || e.ancestors().any(|a| {
                    a.value()
                        .as_element()
                        .is_some_and(|el| el.name() == "label")
                });
            if !labelled {
                missing.push(format!(
                    "{}#{id}[name={}]",
                    v.name(),
                    v.attr("name").unwrap_or("")
                ));
            }
        }
        missing
    }
}
