//! The asset table: embedded bytes (the default) or files read from `web_dir` on each request.

use std::collections::HashMap;
use std::path::{Component, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

#[derive(Debug, Clone)]
pub struct Asset {
    pub bytes: Bytes,
    /// A strong validator: the first 16 bytes of the content's SHA-256, quoted.
    pub etag: String,
    pub content_type: &'static str,
}

impl Asset {
    fn new(path: &str, bytes: Bytes) -> Self {
        let digest = Sha256::digest(&bytes);
        Self { etag: format!("\"{}\"", hex::encode(&digest[..16])), content_type: content_type(path), bytes }
    }
}

#[derive(Debug)]
pub enum Assets {
    Embedded(HashMap<&'static str, Asset>),
    /// Read from this folder each time (development of the web without a rebuild).
    Dir(PathBuf),
}

impl Assets {
    pub fn new(dir: Option<PathBuf>) -> Self {
        match dir {
            Some(d) => Assets::Dir(d),
            None => Assets::Embedded(EMBEDDED.iter().map(|(p, b)| (*p, Asset::new(p, Bytes::from_static(b)))).collect()),
        }
    }

    pub async fn get(&self, path: &str) -> Option<Asset> {
        match self {
            Assets::Embedded(map) => map.get(path).cloned(),
            Assets::Dir(root) => {
                let rel = safe_relative(path)?;
                let bytes = tokio::fs::read(root.join(rel)).await.ok()?;
                Some(Asset::new(path, Bytes::from(bytes)))
            }
        }
    }
}

/// A request path as a relative path of plain names: no `..`, no root, no dot-files, and
/// nothing the build leaves out of the binary (READMEs, `node_modules`), so a folder serves
/// exactly what the embedded copy would.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) if !n.to_string_lossy().starts_with('.') && n != "README.md" && n != "node_modules" => out.push(n),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "wav" => "audio/wav",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_reach_the_folder() {
        assert_eq!(safe_relative("dashboard/app.js"), Some(PathBuf::from("dashboard/app.js")));
        assert_eq!(safe_relative("dashboard/../../etc/passwd"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative("dashboard/.env"), None);
        assert_eq!(safe_relative("widget/README.md"), None);
        assert_eq!(safe_relative(""), None);
    }

    #[test]
    fn the_widget_and_the_dashboard_are_embedded() {
        let Assets::Embedded(map) = Assets::new(None) else { panic!("embedded by default") };
        for p in ["widget/widget.js", "dashboard/index.html", "demo/index.html"] {
            let a = map.get(p).unwrap_or_else(|| panic!("{p} is embedded"));
            assert!(!a.bytes.is_empty());
        }
        assert!(!map.keys().any(|p| p.ends_with("README.md")));
    }
}
