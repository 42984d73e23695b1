//! Reading images made elsewhere: docker-archive tarballs (`docker save`) and OCI image
//! layouts (a directory, or a tar of one: `skopeo copy … oci:DIR`, `podman save --format
//! oci-archive`). This module finds the layers and the image config and checks every digest
//! it is given; the unpacking itself is [`crate::unpack`]'s.
//!
//! An archive is read in place: its members are indexed once (offset and size), and each
//! layer is read with pread from that offset, so a large archive is never copied.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};
use crate::fsutil;
use crate::manifest::hex;
use crate::names::derive_name;
use crate::unpack::Unpacker;

/// JSON documents (manifests, configs, indexes) larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    DockerArchive,
    OciLayout,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::DockerArchive => "docker-archive",
            Format::OciLayout => "oci-layout",
        }
    }
}

/// What a container made from the image runs by default (the `config` of the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ImageConfig {
    fn from_config_json(v: &Value) -> Self {
        let c = &v["config"];
        let strings = |x: &Value| -> Option<Vec<String>> {
            x.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
        };
        let nonempty = |x: &Value| x.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        ImageConfig {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]).unwrap_or_default(),
            working_dir: nonempty(&c["WorkingDir"]),
            user: nonempty(&c["User"]),
        }
    }
}

/// Where the members of the input live.
pub enum Source {
    Dir {
        fd: OwnedFd,
        path: PathBuf,
    },
    Tar {
        file: Arc<File>,
        path: PathBuf,
        /// member path (without "./") -> (offset, size) of its data in the archive
        members: HashMap<String, (u64, u64)>,
    },
}

/// A pread window on the archive: several may be open at once without sharing an offset.
struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn member_key(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    let s = s.trim_start_matches("./").trim_end_matches('/');
    (!s.is_empty()).then(|| s.to_string())
}

/// Lexically resolve a symlink member's target relative to the member's directory; None when
/// it climbs out of the archive.
fn resolve_member_link(member: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        member.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir { path, .. } | Source::Tar { path, .. } => path,
        }
    }

    /// Open the input: a directory (OCI layout, or an unpacked docker-archive) or a tar.
    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(ImageError::io("cannot read", path))?;
        if meta.is_dir() {
            return Ok(Source::Dir {
                fd: fsutil::open_dir(path)?,
                path: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(ImageError::io("cannot open", path))?;
        let mut magic = [0u8; 6];
        let n = file.read_at(&mut magic, 0).unwrap_or(0);
        let compression = match &magic[..n] {
            [0x1f, 0x8b, ..] => Some("gzip"),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
            [0xfd, b'7', b'z', b'X', b'Z', 0] => Some("xz"),
            [b'B', b'Z', b'h', ..] => Some("bzip2"),
            _ => None,
        };
        if let Some(compression) = compression {
            return Err(ImageError::CompressedArchive {
                file: path.to_path_buf(),
                compression,
            });
        }
        let bad = |e: io::Error| ImageError::BadTar {
            file: path.to_path_buf(),
            layer: "the archive itself".into(),
            source: e,
        };
        let mut members = HashMap::new();
        let mut links: Vec<(String, String, bool)> = Vec::new();
        {
            let mut ar = tar::Archive::new(&file);
            for e in ar.entries_with_seek().map_err(bad)? {
                let e = e.map_err(bad)?;
                let Some(key) = member_key(&e.path_bytes()) else {
                    continue;
                };
                let t = e.header().entry_type();
                if t.is_file() {
                    members.insert(key, (e.raw_file_position(), e.size()));
                } else if t.is_symlink() || t.is_hard_link() {
                    if let Some(target) = e.link_name_bytes().and_then(|t| member_key(&t)) {
                        links.push((key, target, t.is_symlink()));
                    }
                }
            }
        }
        // docker save writes a symlink for a layer shared by two images of one archive.
        for _ in 0..8 {
            let mut changed = false;
            for (key, target, symlink) in &links {
                if members.contains_key(key) {
                    continue;
                }
                let resolved = if *symlink {
                    resolve_member_link(key, target)
                } else {
                    Some(target.clone())
                };
                if let Some(v) = resolved.and_then(|r| members.get(&r).copied()) {
                    members.insert(key.clone(), v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if members.is_empty() {
            return Err(ImageError::UnknownFormat {
                file: path.to_path_buf(),
                found: "an empty archive (or not a tar file at all)".into(),
            });
        }
        Ok(Source::Tar {
            file: Arc::new(file),
            path: path.to_path_buf(),
            members,
        })
    }

    fn has(&self, member: &str) -> bool {
        match self {
            Source::Tar { members, .. } => members.contains_key(member),
            Source::Dir { fd, .. } => {
                fsutil::openat_beneath(fd.as_fd(), member.as_bytes(), OFlag::O_PATH, Mode::empty())
                    .is_ok()
            }
        }
    }

    fn missing(&self, member: &str) -> ImageError {
        ImageError::BadImage {
            file: self.path().to_path_buf(),
            member: member.to_string(),
            problem: "the image refers to it but it is not in the archive".into(),
        }
    }

    /// A reader over one member and its size.
    pub fn open_member(&self, member: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        match self {
            Source::Tar { file, members, .. } => {
                let &(off, size) = members.get(member).ok_or_else(|| self.missing(member))?;
                Ok((
                    Box::new(Section {
                        file: file.clone(),
                        pos: off,
                        end: off + size,
                    }),
                    size,
                ))
            }
            Source::Dir { fd, path } => {
                // Symlinks inside the layout may be followed as long as they stay in it
                // (RESOLVE_BENEATH alone): the layout is input, not a tree we write to.
                let how = nix::fcntl::OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
                    .resolve(
                        nix::fcntl::ResolveFlag::RESOLVE_BENEATH
                            | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
                    );
                let raw = nix::fcntl::openat2(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    std::ffi::OsStr::new(member),
                    how,
                )
                .map_err(|e| match e {
                    nix::errno::Errno::ENOENT => self.missing(member),
                    e => ImageError::nix("cannot open", path.join(member))(e),
                })?;
                // SAFETY: openat2 returned a fresh fd that nothing else owns.
                let f =
                    File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
                let size = f
                    .metadata()
                    .map_err(ImageError::io("cannot stat", path.join(member)))?
                    .len();
                Ok((Box::new(f), size))
            }
        }
    }

    fn read_json(&self, member: &str) -> Result<Value> {
        let (r, size) = self.open_member(member)?;
        let bad = |problem: String| ImageError::BadImage {
            file: self.path().to_path_buf(),
            member: member.to_string(),
            problem,
        };
        if size > MAX_JSON {
            return Err(bad(format!(
                "{size} bytes is too large for a JSON document"
            )));
        }
        let mut buf = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(ImageError::io("cannot read", self.path().join(member)))?;
        serde_json::from_slice(&buf).map_err(|e| bad(format!("not valid JSON: {e}")))
    }

    /// Read a member whole and check its sha256 (and size, when known).
    fn read_verified(&self, member: &str, digest_hex: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let (r, actual_size) = self.open_member(member)?;
        if actual_size > MAX_JSON {
            return Err(ImageError::BadImage {
                file: self.path().to_path_buf(),
                member: member.to_string(),
                problem: format!("{actual_size} bytes is too large for a JSON document"),
            });
        }
        let mut buf = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(ImageError::io("cannot read", self.path().join(member)))?;
        self.check_size(member, size, buf.len() as u64)?;
        let actual = hex(&Sha256::digest(&buf));
        if actual != digest_hex {
            return Err(self.mismatch(member, digest_hex, &actual));
        }
        Ok(buf)
    }

    fn check_size(&self, member: &str, want: Option<u64>, got: u64) -> Result<()> {
        match want {
            Some(want) if want != got => Err(ImageError::BadImage {
                file: self.path().to_path_buf(),
                member: member.to_string(),
                problem: format!(
                    "it is {got} bytes but its descriptor says {want}; the image is corrupt or was tampered with"
                ),
            }),
            _ => Ok(()),
        }
    }

    fn mismatch(&self, member: &str, expected: &str, actual: &str) -> ImageError {
        ImageError::DigestMismatch {
            file: self.path().to_path_buf(),
            member: member.to_string(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        }
    }

    /// Top-level names, for "neither format" errors.
    fn listing(&self) -> String {
        let mut names: Vec<String> = match self {
            Source::Tar { members, .. } => members
                .keys()
                .map(|k| k.split('/').next().unwrap_or("").to_string())
                .collect(),
            Source::Dir { path, .. } => std::fs::read_dir(path)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        };
        names.sort();
        names.dedup();
        let more = names.len().saturating_sub(10);
        names.truncate(10);
        let mut s = names.join(", ");
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        if s.is_empty() {
            "nothing".into()
        } else {
            s
        }
    }
}

/// One layer to apply.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub member: String,
    /// sha256 hex of the compressed blob (OCI descriptors), checked before unpacking.
    pub blob_digest: Option<String>,
    pub blob_size: Option<u64>,
    /// sha256 hex of the uncompressed tar (config rootfs.diff_ids), checked while unpacking.
    pub diff_id: Option<String>,
}

/// What an input holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub format: Format,
    pub layers: Vec<LayerRef>,
    pub config: ImageConfig,
    /// The image reference the input names (RepoTags, ref.name annotations), if any.
    pub reference: Option<String>,
    pub derived_name: Option<String>,
}

fn parse_digest(src: &Source, member: &str, d: &str) -> Result<String> {
    match d.strip_prefix("sha256:") {
        Some(h) if crate::names::is_full_id(h) => Ok(h.to_string()),
        _ => Err(ImageError::BadImage {
            file: src.path().to_path_buf(),
            member: member.to_string(),
            problem: format!(
                "digest {d:?} is not sha256:<64 lower-case hex digits> (only sha256 is supported)"
            ),
        }),
    }
}

fn diff_ids(src: &Source, member: &str, cfg: &Value, layers: usize) -> Result<Vec<Option<String>>> {
    let Some(ids) = cfg["rootfs"]["diff_ids"].as_array() else {
        return Ok(vec![None; layers]);
    };
    if ids.len() != layers {
        return Err(ImageError::BadImage {
            file: src.path().to_path_buf(),
            member: member.to_string(),
            problem: format!(
                "rootfs.diff_ids lists {} layers but the manifest {layers}",
                ids.len()
            ),
        });
    }
    ids.iter()
        .map(|v| parse_digest(src, member, v.as_str().unwrap_or("")).map(Some))
        .collect()
}

/// Find out what the input is and what it holds. Digests of the manifests and configs are
/// checked here; layer digests by [`verify_blobs`] and [`apply_layers`].
pub fn plan(src: &Source) -> Result<Plan> {
    if src.has("manifest.json") {
        plan_docker(src)
    } else if src.has("oci-layout") && src.has("index.json") {
        plan_oci(src)
    } else {
        Err(ImageError::UnknownFormat {
            file: src.path().to_path_buf(),
            found: src.listing(),
        })
    }
}

fn plan_docker(src: &Source) -> Result<Plan> {
    let bad = |member: &str, problem: String| ImageError::BadImage {
        file: src.path().to_path_buf(),
        member: member.to_string(),
        problem,
    };
    let m = src.read_json("manifest.json")?;
    let images = m
        .as_array()
        .ok_or_else(|| bad("manifest.json", "it is not a JSON array".into()))?;
    let img = match images.as_slice() {
        [one] => one,
        [] => return Err(bad("manifest.json", "it lists no image".into())),
        many => {
            return Err(bad(
                "manifest.json",
                format!(
                    "it lists {} images; sgrun imports one image per archive: `docker save` one image at a time",
                    many.len()
                ),
            ))
        }
    };
    let config_member = img["Config"]
        .as_str()
        .ok_or_else(|| bad("manifest.json", "no \"Config\" member named".into()))?
        .trim_start_matches("./")
        .to_string();
    // The config's name is its digest in both docker layouts (<hex>.json, blobs/sha256/<hex>).
    let named_digest = config_member
        .strip_suffix(".json")
        .or_else(|| config_member.strip_prefix("blobs/sha256/"))
        .filter(|h| crate::names::is_full_id(h));
    let cfg: Value = match named_digest {
        Some(h) => {
            let bytes = src.read_verified(&config_member, h, None)?;
            serde_json::from_slice(&bytes)
                .map_err(|e| bad(&config_member, format!("not valid JSON: {e}")))?
        }
        None => src.read_json(&config_member)?,
    };
    let layer_members: Vec<String> = img["Layers"]
        .as_array()
        .ok_or_else(|| bad("manifest.json", "no \"Layers\" list".into()))?
        .iter()
        .map(|l| {
            l.as_str()
                .map(|s| s.trim_start_matches("./").to_string())
                .ok_or_else(|| bad("manifest.json", "a layer name is not a string".into()))
        })
        .collect::<Result<_>>()?;
    let ids = diff_ids(src, &config_member, &cfg, layer_members.len())?;
    let layers = layer_members
        .into_iter()
        .zip(ids)
        .map(|(member, diff_id)| {
            // docker >= 25 names layers by their blob digest: check it too.
            let blob_digest = member
                .strip_prefix("blobs/sha256/")
                .filter(|h| crate::names::is_full_id(h))
                .map(str::to_string);
            LayerRef {
                member,
                blob_digest,
                blob_size: None,
                diff_id,
            }
        })
        .collect();
    let reference = img["RepoTags"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t.as_str())
        .map(str::to_string);
    Ok(Plan {
        format: Format::DockerArchive,
        layers,
        config: ImageConfig::from_config_json(&cfg),
        derived_name: reference.as_deref().and_then(derive_name),
        reference,
    })
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn blob_member(digest_hex: &str) -> String {
    format!("blobs/sha256/{digest_hex}")
}

fn plan_oci(src: &Source) -> Result<Plan> {
    let bad = |member: &str, problem: String| ImageError::BadImage {
        file: src.path().to_path_buf(),
        member: member.to_string(),
        problem,
    };
    let layout = src.read_json("oci-layout")?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        return Err(bad("oci-layout", "no imageLayoutVersion".into()));
    }
    let mut index = src.read_json("index.json")?;
    let mut index_member = "index.json".to_string();
    let mut reference = None;
    // An index may point at another index (multi-platform images): follow up to 2 levels.
    for _ in 0..3 {
        let descs = index["manifests"]
            .as_array()
            .cloned()
            .ok_or_else(|| bad(&index_member, "no \"manifests\" list".into()))?;
        let fits = |d: &Value| {
            let p = &d["platform"];
            p.is_null()
                || (p["os"].as_str() == Some("linux")
                    && p["architecture"].as_str() == Some(host_arch()))
        };
        let candidates: Vec<&Value> = descs.iter().filter(|d| fits(d)).collect();
        let desc = match candidates.as_slice() {
            [one] => *one,
            [] => {
                return Err(bad(
                    &index_member,
                    format!(
                        "no manifest for linux/{} among {} entries",
                        host_arch(),
                        descs.len()
                    ),
                ))
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|d| {
                        d["annotations"]["org.opencontainers.image.ref.name"]
                            .as_str()
                            .or(d["digest"].as_str())
                            .unwrap_or("?")
                            .to_string()
                    })
                    .collect();
                return Err(bad(
                    &index_member,
                    format!(
                        "it lists {} images ({}); sgrun imports one image per layout: copy one image into its own layout",
                        many.len(),
                        names.join(", ")
                    ),
                ));
            }
        };
        let ann = &desc["annotations"];
        if reference.is_none() {
            reference = ann["io.containerd.image.name"]
                .as_str()
                .or_else(|| ann["org.opencontainers.image.ref.name"].as_str())
                .map(str::to_string);
        }
        let digest = parse_digest(src, &index_member, desc["digest"].as_str().unwrap_or(""))?;
        let member = blob_member(&digest);
        let bytes = src.read_verified(&member, &digest, desc["size"].as_u64())?;
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| bad(&member, format!("not valid JSON: {e}")))?;
        let media = desc["mediaType"]
            .as_str()
            .or(doc["mediaType"].as_str())
            .unwrap_or("");
        if media == OCI_INDEX || media == DOCKER_LIST || doc.get("manifests").is_some() {
            index = doc;
            index_member = member;
            continue;
        }
        return plan_oci_manifest(src, &member, &doc, reference);
    }
    Err(bad(&index_member, "indexes nested more than 3 deep".into()))
}

fn plan_oci_manifest(
    src: &Source,
    member: &str,
    m: &Value,
    reference: Option<String>,
) -> Result<Plan> {
    let bad = |problem: String| ImageError::BadImage {
        file: src.path().to_path_buf(),
        member: member.to_string(),
        problem,
    };
    let cdesc = &m["config"];
    let cdigest = parse_digest(src, member, cdesc["digest"].as_str().unwrap_or(""))?;
    let cmember = blob_member(&cdigest);
    let cbytes = src.read_verified(&cmember, &cdigest, cdesc["size"].as_u64())?;
    let cfg: Value = serde_json::from_slice(&cbytes).map_err(|e| ImageError::BadImage {
        file: src.path().to_path_buf(),
        member: cmember.clone(),
        problem: format!("not valid JSON: {e}"),
    })?;
    let descs = m["layers"]
        .as_array()
        .ok_or_else(|| bad("no \"layers\" list".into()))?;
    let ids = diff_ids(src, &cmember, &cfg, descs.len())?;
    let mut layers = Vec::new();
    for (d, diff_id) in descs.iter().zip(ids) {
        let digest = parse_digest(src, member, d["digest"].as_str().unwrap_or(""))?;
        layers.push(LayerRef {
            member: blob_member(&digest),
            blob_digest: Some(digest),
            blob_size: d["size"].as_u64(),
            diff_id,
        });
    }
    // ref.name alone is usually only a tag ("latest"): not a name.
    let derived_name = reference
        .as_deref()
        .filter(|r| r.contains('/') || r.contains(':'))
        .and_then(derive_name);
    Ok(Plan {
        format: Format::OciLayout,
        layers,
        config: ImageConfig::from_config_json(&cfg),
        reference,
        derived_name,
    })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Hash every layer blob that has a digest, before anything is unpacked: a tampered layer
/// is refused before its first entry is written.
pub fn verify_blobs(src: &Source, plan: &Plan, progress: &mut dyn FnMut(String)) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    for (i, l) in plan.layers.iter().enumerate() {
        let Some(want) = &l.blob_digest else { continue };
        let (mut r, size) = src.open_member(&l.member)?;
        src.check_size(&l.member, l.blob_size, size)?;
        progress(format!(
            "checking layer {}/{} ({})",
            i + 1,
            plan.layers.len(),
            crate::human_size(size)
        ));
        let mut h = Sha256::new();
        loop {
            let n = r
                .read(&mut buf)
                .map_err(ImageError::io("cannot read", src.path().join(&l.member)))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got = hex(&h.finalize());
        if &got != want {
            return Err(src.mismatch(&l.member, want, &got));
        }
    }
    Ok(())
}

/// Counts and hashes what passes through (the uncompressed layer, for its diff_id).
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Apply every layer, in order, with the unpacker; check each layer's diff_id.
pub fn apply_layers(
    src: &Source,
    plan: &Plan,
    unpacker: &mut Unpacker,
    progress: &mut dyn FnMut(String),
) -> Result<()> {
    let total = plan.layers.len();
    for (i, l) in plan.layers.iter().enumerate() {
        let label = format!("layer {}/{total} ({})", i + 1, l.member);
        let (r, size) = src.open_member(&l.member)?;
        progress(format!(
            "unpacking layer {}/{total} ({})",
            i + 1,
            crate::human_size(size)
        ));
        let mut br = BufReader::with_capacity(256 * 1024, r);
        let head = br
            .fill_buf()
            .map_err(ImageError::io("cannot read", src.path().join(&l.member)))?;
        let unsupported = match head {
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
            [0xfd, b'7', b'z', b'X', b'Z', ..] => Some("xz"),
            [b'B', b'Z', b'h', ..] => Some("bzip2"),
            _ => None,
        };
        if let Some(compression) = unsupported {
            return Err(ImageError::UnsupportedCompression {
                file: src.path().to_path_buf(),
                layer: label,
                compression,
            });
        }
        let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::bufread::MultiGzDecoder::new(br))
        } else {
            Box::new(br)
        };
        let mut hr = HashingReader {
            inner: decoded,
            hash: Sha256::new(),
        };
        unpacker.apply_layer(&label, &mut hr)?;
        if let Some(want) = &l.diff_id {
            // The tar's end-of-archive blocks and any padding after them count too.
            io::copy(&mut hr, &mut io::sink()).map_err(|e| ImageError::BadTar {
                file: src.path().to_path_buf(),
                layer: label.clone(),
                source: e,
            })?;
            let got = hex(&hr.hash.finalize());
            if &got != want {
                return Err(src.mismatch(&format!("{} (uncompressed)", l.member), want, &got));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_links() {
        assert_eq!(
            resolve_member_link("b/layer.tar", "../a/layer.tar").as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(resolve_member_link("layer.tar", "../../x"), None);
        assert_eq!(
            member_key(b"./manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(member_key(b"./"), None);
    }

    #[test]
    fn config_fields() {
        let v: Value = serde_json::from_str(
            r#"{"config":{"Entrypoint":["/bin/sh"],"Cmd":null,"Env":["A=1"],"WorkingDir":"","User":"33"}}"#,
        )
        .unwrap();
        let c = ImageConfig::from_config_json(&v);
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(c.cmd, None);
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("33"));
    }
}
