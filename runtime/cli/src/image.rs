//! `sgrun image build | import | ls | inspect | verify | rm`: the CLI of sgrun-images.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use sgrun_images::build::{self, BuildOptions};
use sgrun_images::{human_size, Image, ImageSource, ImportOptions, Store};

const IMAGE_HELP: &str = "\
An image is a read-only root filesystem that sites run on. Every image is stored once, under
the sha256 of its canonical manifest (every path with its type, mode, owner, size and content
hash), so `sgrun image verify` can prove that nothing changed since it was made.

Images come from recipes (images/NAME/recipe.toml, built with mmdebstrap from Debian's
packages) or from files (`docker save` tarballs, OCI image layouts). Imports are unpacked
with directory-fd-relative calls that never follow a symlink: entries with `..`, absolute
paths, paths through a symlink, relative symlinks that climb out of the image, hardlinks to
anything but a file of the image, and device nodes are refused; setuid/setgid bits and file
capabilities are stripped unless --trusted. A failed build or import leaves nothing behind.

Files (--state-dir, env SGRUN_STATE_DIR, default /var/lib/sgrun):
  images/sha256/ID/rootfs/      the tree (host root ids, never modified)
  images/sha256/ID/manifest     the canonical manifest; ID is its sha256
  images/sha256/ID/image.json   metadata: names, source, size, config of imports
  images/sha256/ID/users/CTR    in-use markers written by the runtime
  images/names/NAME             the ID a name points to
  images/tmp/                   builds and imports in progress

Examples:
  sgrun image build images/wordpress
  sgrun image import --name busybox busybox.tar
  sgrun image ls
  sgrun image inspect wordpress
  sgrun image verify --all
  sgrun image rm busybox

See docs/images.md.";

#[derive(Subcommand, Debug)]
#[command(after_long_help = IMAGE_HELP)]
pub enum ImageCommand {
    /// Build an image from a recipe directory (recipe.toml + files/) with mmdebstrap
    #[command(after_long_help = "\
The recipe's keys map to mmdebstrap options and post-install steps (see the comments in
images/wordpress/recipe.toml and docs/images.md); an unknown key is an error. The build runs
as root, from Debian's mirrors, in a staging directory of the store, and is committed under
the recipe's `name` only when complete. If an image of the same recipe hash (recipe.toml,
every file of files/, the builder version) is in the store, nothing is built: \"up to date\".

Progress goes to stderr, one line per phase with the seconds since the start.

Examples:
  sgrun image build images/wordpress
  sgrun image build --rebuild --quiet --json images/wordpress")]
    Build {
        /// Recipe directory, holding recipe.toml
        dir: PathBuf,
        /// Build even when an image of the same recipe is in the store
        #[arg(long)]
        rebuild: bool,
        /// No progress lines
        #[arg(short, long)]
        quiet: bool,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Import a docker-archive tarball or an OCI image layout (a directory or a tar of one)
    #[command(after_long_help = "\
Formats: `docker save` output (manifest.json + config + layer tars) and OCI image layouts
(oci-layout + index.json + blobs/sha256/…; `skopeo copy docker://… oci:DIR`, `podman save
--format oci-archive`), as a directory or an uncompressed tar. Every digest the image names
is checked (blob digests before unpacking, rootfs.diff_ids while unpacking); a mismatch
refuses the whole image. Layers may be uncompressed or gzip; zstd layers are refused.

The name defaults to the repository of the image's own reference (busybox:1.36 -> busybox);
without one the image is known by its id only.

Examples:
  docker save busybox:1.36 -o busybox.tar && sgrun image import busybox.tar
  sgrun image import --name site-base --max-size 2G ./oci-layout-dir
  sgrun image import --trusted --name tools tools.tar   (keeps setuid bits)")]
    Import {
        /// The archive or layout directory
        file: PathBuf,
        /// Name for the image (1-63 characters [a-z0-9._-])
        #[arg(long)]
        name: Option<String>,
        /// Keep setuid/setgid bits and file capabilities (only for images you trust)
        #[arg(long)]
        trusted: bool,
        /// Refuse images whose files add up to more than SIZE (e.g. 2G); the free space of
        /// the store's filesystem is always a limit
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// No progress lines
        #[arg(short, long)]
        quiet: bool,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// List images: names, id, size, entries, source, users
    #[command(visible_alias = "list")]
    Ls {
        /// Print JSON (an array of what `inspect` prints)
        #[arg(long)]
        json: bool,
        /// Print full ids only
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print everything about one image as JSON (metadata, rootfs path, users)
    Inspect {
        /// Name, id, or id prefix of at least 12 hex digits
        image: String,
    },
    /// Re-hash images and compare them with their manifests; exit 1 if any differs
    #[command(after_long_help = "\
Walks the image's rootfs (never following a symlink), makes its manifest anew and compares
it path by path with the stored one, whose sha256 must still be the image id. Differences
are listed as PATH: what changed (content, mode, owner, size, type, target, capability,
missing, added). Exit status 0 when every image checked is intact, 1 otherwise.

Examples:
  sgrun image verify wordpress
  sgrun image verify          (every image)")]
    Verify {
        /// Images to check (default: all)
        images: Vec<String>,
        /// Print the reports as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove an image name, and the image when no name and no container is left
    #[command(
        visible_alias = "remove",
        after_long_help = "\
By name: the name goes; the image goes too when it was its last name. By id: the image goes
when no name points at it (--force removes its names too). An image in use by a container
(a marker under images/sha256/ID/users/ whose container still exists in the runtime's --root)
is never removed, --force or not: delete the container first. Markers of containers that no
longer exist are removed on the way, with a note.

Examples:
  sgrun image rm busybox
  sgrun image rm --force 3f2a9c1d0b7e"
    )]
    Rm {
        /// Names or ids
        #[arg(required = true)]
        images: Vec<String>,
        /// Removing by id: remove the names that point at the image too
        #[arg(short, long)]
        force: bool,
    },
    /// (debugging) Print the canonical manifest of any directory tree
    #[command(hide = true)]
    Manifest { dir: PathBuf },
}

fn progress_line(quiet: bool) -> impl FnMut(f64, &str) {
    move |secs, msg| {
        if !quiet {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "sgrun image: [{secs:6.1}s] {msg}");
        }
    }
}

fn open(state_dir: &Path) -> Result<Store> {
    let store = Store::open(state_dir).with_context(|| {
        format!(
            "cannot open the image store in {} (--state-dir)",
            state_dir.display()
        )
    })?;
    for n in &store.notes {
        eprintln!("sgrun image: note: {n}");
    }
    Ok(store)
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn names_of(img: &Image) -> String {
    if img.names.is_empty() {
        "<none>".into()
    } else {
        img.names.join(",")
    }
}

fn source_str(img: &Image) -> String {
    match &img.meta.source {
        ImageSource::Recipe { recipe, .. } => format!("recipe {}", recipe.display()),
        ImageSource::Import { file, format, .. } => {
            format!("{} {}", format.as_str(), file.display())
        }
    }
}

fn inspect_json(store: &Store, img: &Image) -> Result<serde_json::Value> {
    let users = store.users(&img.id)?;
    let mut v = serde_json::to_value(&img.meta)?;
    v["names"] = json!(img.names);
    v["rootfs"] = json!(img.rootfs);
    v["users"] = serde_json::to_value(&users)?;
    Ok(v)
}

pub fn run(cmd: ImageCommand, state_dir: &Path) -> Result<u8> {
    match cmd {
        ImageCommand::Build {
            dir,
            rebuild,
            quiet,
            json,
        } => {
            let store = open(state_dir)?;
            let mut say = progress_line(quiet);
            let out = build::build(&store, &dir, &BuildOptions { rebuild }, &mut say)
                .with_context(|| format!("cannot build the image of {}", dir.display()))?;
            let img = &out.committed.image;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if out.up_to_date {
                println!(
                    "image {} is up to date: sha256:{} (recipe hash {}; --rebuild builds it anew)",
                    names_of(img),
                    img.id,
                    &out.recipe_hash[..12]
                );
            } else {
                print_committed("built", img, out.seconds, out.committed.new_content);
            }
            if let Some(old) = &out.committed.replaced {
                eprintln!(
                    "sgrun image: the name {} pointed at {} before; that image was {}",
                    names_of(img),
                    short(old),
                    if out.committed.replaced_removed {
                        "removed (nothing else used it)"
                    } else {
                        "kept (still named or in use; `sgrun image ls` shows it)"
                    }
                );
            }
        }
        ImageCommand::Import {
            file,
            name,
            trusted,
            max_size,
            quiet,
            json,
        } => {
            let max_size = match max_size {
                Some(s) => Some(sgrun_images::parse_size(&s).with_context(|| {
                    format!("--max-size {s:?}: write a number with a unit, e.g. 500M or 2G")
                })?),
                None => None,
            };
            let store = open(state_dir)?;
            let started = std::time::Instant::now();
            let mut say = progress_line(quiet);
            let mut line = |msg: String| say(started.elapsed().as_secs_f64(), &msg);
            let out = store
                .import(
                    &file,
                    &ImportOptions {
                        name,
                        trusted,
                        max_size,
                    },
                    &mut line,
                )
                .with_context(|| format!("cannot import {}", file.display()))?;
            let img = &out.committed.image;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if out.reused {
                println!(
                    "image {}: this archive was imported before as sha256:{}; nothing unpacked (`sgrun image verify` checks the tree)",
                    names_of(img),
                    img.id
                );
            } else {
                print_committed("imported", img, out.seconds, out.committed.new_content);
            }
            let s = &out.stats;
            if s.stripped_setid > 0 || s.stripped_caps > 0 {
                eprintln!(
                    "sgrun image: stripped {} setuid/setgid bit(s) and {} file capability(ies) (untrusted image; --trusted keeps them)",
                    s.stripped_setid, s.stripped_caps
                );
            }
            if s.ignored_xattrs > 0 {
                eprintln!(
                    "sgrun image: note: {} extended attribute(s) other than security.capability were not applied",
                    s.ignored_xattrs
                );
            }
            if let Some(old) = &out.committed.replaced {
                eprintln!(
                    "sgrun image: the name {} pointed at {} before; that image was {}",
                    names_of(img),
                    short(old),
                    if out.committed.replaced_removed {
                        "removed (nothing else used it)"
                    } else {
                        "kept (still named or in use)"
                    }
                );
            }
        }
        ImageCommand::Ls { json, quiet } => {
            let store = open(state_dir)?;
            let list = store.list()?;
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|i| inspect_json(&store, i))
                    .collect::<Result<_>>()?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if quiet {
                for i in &list {
                    println!("{}", i.id);
                }
            } else {
                println!(
                    "{:<24} {:<12} {:<20} {:>10} {:>8} {:>5}  SOURCE",
                    "NAME", "ID", "CREATED", "SIZE", "ENTRIES", "USERS"
                );
                for i in &list {
                    let users = store.users(&i.id)?.iter().filter(|u| u.alive).count();
                    println!(
                        "{:<24} {:<12} {:<20} {:>10} {:>8} {:>5}  {}",
                        names_of(i),
                        short(&i.id),
                        i.meta.created.trim_end_matches('Z').replace('T', " "),
                        human_size(i.meta.disk_usage),
                        i.meta.files,
                        users,
                        source_str(i)
                    );
                }
            }
        }
        ImageCommand::Inspect { image } => {
            let store = open(state_dir)?;
            let img = store.resolve(&image)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&inspect_json(&store, &img)?)?
            );
        }
        ImageCommand::Verify { images, json } => {
            let store = open(state_dir)?;
            let list = if images.is_empty() {
                store.list()?
            } else {
                images
                    .iter()
                    .map(|r| store.resolve(r))
                    .collect::<Result<_, _>>()?
            };
            let mut reports = Vec::new();
            for img in &list {
                let r = store
                    .verify(img)
                    .with_context(|| format!("cannot verify image {}", short(&img.id)))?;
                if !json {
                    if r.ok {
                        println!("ok        {} sha256:{}", names_of(img), img.id);
                    } else {
                        println!(
                            "MODIFIED  {} sha256:{}: {} path(s) differ from the manifest{}",
                            names_of(img),
                            img.id,
                            r.differences.len(),
                            if r.manifest_altered {
                                ", and the manifest itself was altered"
                            } else {
                                ""
                            }
                        );
                        for d in &r.differences {
                            println!("  {}: {}", d.path, d.change);
                        }
                    }
                }
                reports.push(r);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            }
            let bad = reports.iter().filter(|r| !r.ok).count();
            if bad > 0 {
                eprintln!(
                    "sgrun image: {bad} of {} image(s) differ from their manifest: their trees were modified after they were made; remove and rebuild or re-import them",
                    reports.len()
                );
                return Ok(1);
            }
        }
        ImageCommand::Rm { images, force } => {
            let store = open(state_dir)?;
            let mut failed = Vec::new();
            for r in &images {
                match store.remove(r, force) {
                    Ok(out) => {
                        for c in &out.stale_markers {
                            eprintln!(
                                "sgrun image: note: removed the stale in-use marker of container {c} (it no longer exists)"
                            );
                        }
                        if out.removed_content {
                            println!(
                                "removed image sha256:{}{}",
                                out.id,
                                if out.removed_names.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (name {})", out.removed_names.join(", "))
                                }
                            );
                        } else {
                            println!(
                                "removed name {}; image {} kept (still named {})",
                                out.removed_names.join(", "),
                                short(&out.id),
                                out.kept_names.join(", ")
                            );
                        }
                    }
                    // One image: its error is the last line, naming the root cause.
                    Err(e) if images.len() == 1 => return Err(e.into()),
                    Err(e) => {
                        eprintln!("sgrun: {}", error_chain(&e));
                        failed.push(r.clone());
                    }
                }
            }
            if !failed.is_empty() {
                bail!("could not remove {}", failed.join(", "));
            }
        }
        ImageCommand::Manifest { dir } => {
            let m = sgrun_images::manifest::walk(&dir)
                .with_context(|| format!("cannot make the manifest of {}", dir.display()))?;
            print!("{}", m.text);
            eprintln!(
                "sha256:{} {} entries, {} content, {} on disk",
                m.id,
                m.entries,
                human_size(m.size),
                human_size(m.disk_usage)
            );
        }
    }
    Ok(0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// The one line a person reads after a build or an import.
fn print_committed(verb: &str, img: &sgrun_images::Image, seconds: f64, new_content: bool) {
    println!(
        "image {} {verb} in {seconds:.1} s: sha256:{}, {} on disk, {} entries{}",
        names_of(img),
        img.id,
        human_size(img.meta.disk_usage),
        img.meta.files,
        if new_content {
            ""
        } else {
            " (the same tree was in the store already)"
        }
    );
}
