//! Whether a built component links in a host we do not run here, read from the component
//! itself: every interface it imports, and every function it uses of each, must be in the
//! host's world at a version the host's linker accepts, and every export the host calls must be
//! there.
//!
//! The versions follow wasmtime's linker (which Spin and `wasmtime serve` use): an import of
//! `wasi:http/types@0.2.12` is satisfied by a host's `@0.2.6`, a semver-compatible release, but
//! only the functions that exist in the host's version link. Pre-releases (`0.2.0-draft2`,
//! `0.2.0-draft-2024-09-27`, `0.2.0-rc.1`) match only themselves.

use std::path::Path;

use anyhow::{Context, bail};
use semver::Version;
use wit_parser::{Interface, Resolve, TypeDefKind, WorldId, WorldItem};

/// A host's WIT world: what it provides to a component and what it calls on it.
pub struct HostWorld {
    name: String,
    resolve: Resolve,
    world: WorldId,
}

/// The component side of a check: its decoded imports and exports.
pub struct ComponentWorld {
    resolve: Resolve,
    world: WorldId,
}

impl ComponentWorld {
    /// Decodes a built component (its binary).
    pub fn decode(component: &[u8]) -> anyhow::Result<ComponentWorld> {
        match wit_component::decode(component).context("decoding the component")? {
            wit_component::DecodedWasm::Component(resolve, world) => {
                Ok(ComponentWorld { resolve, world })
            }
            wit_component::DecodedWasm::WitPackage(..) => {
                bail!("a WIT package, not a component")
            }
        }
    }

    /// `interface#function` of every function the component imports.
    pub fn imported_functions(&self) -> Vec<String> {
        let mut functions = Vec::new();
        for (key, item) in &self.resolve.worlds[self.world].imports {
            if let WorldItem::Interface { id, .. } = item {
                let named = self.resolve.name_world_key(key);
                for function in self.resolve.interfaces[*id].functions.keys() {
                    functions.push(format!("{named}#{function}"));
                }
            }
        }
        functions
    }

    /// The resolve and world, to change before [`ComponentWorld::encode`] (for the checks' own
    /// tests: a component with one import more than the real one).
    pub fn parts_mut(&mut self) -> (&mut Resolve, WorldId) {
        (&mut self.resolve, self.world)
    }

    /// A component with these imports and exports (its core module does nothing).
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let mut module = wit_component::dummy_module(
            &self.resolve,
            self.world,
            wit_parser::ManglingAndAbi::Standard32,
        );
        wit_component::embed_component_metadata(
            &mut module,
            &self.resolve,
            self.world,
            wit_component::StringEncoding::UTF8,
        )?;
        wit_component::ComponentEncoder::default()
            .module(&module)?
            .validate(true)
            .encode()
    }
}

impl HostWorld {
    /// World `world` of the WIT package in `dir` (with its `deps/`), as host `name`.
    pub fn load(name: &str, dir: &Path, world: &str) -> anyhow::Result<HostWorld> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?;
        let world = resolve.select_world(&[package], Some(world))?;
        Ok(HostWorld {
            name: name.to_owned(),
            resolve,
            world,
        })
    }

    /// Every reason `component` would not link or would not be called in this host; empty
    /// when it would.
    pub fn problems(&self, component: &ComponentWorld) -> Vec<String> {
        let mut problems = Vec::new();
        let theirs = &component.resolve;
        for (key, item) in &theirs.worlds[component.world].imports {
            match item {
                // An interface of plain types (records, variants) used by the exports asks
                // nothing of the host: no function to link, no resource to provide.
                WorldItem::Interface { id, .. }
                    if !asks_the_host(theirs, &theirs.interfaces[*id]) => {}
                WorldItem::Interface { id, .. } => {
                    let wanted = &theirs.interfaces[*id];
                    let named = theirs.name_world_key(key);
                    let host_imports = self.resolve.worlds[self.world].imports.values();
                    match component_interface(host_imports, &self.resolve, theirs, wanted) {
                        Some(provided) => {
                            for function in wanted.functions.keys() {
                                if !provided.functions.contains_key(function) {
                                    problems.push(format!(
                                        "imports `{function}` of `{named}`, which {}'s version of \
                                         the interface does not have",
                                        self.name
                                    ));
                                }
                            }
                        }
                        None => problems.push(format!(
                            "imports `{named}`, which {} does not provide{}",
                            self.name,
                            self.versions_of(theirs, wanted)
                        )),
                    }
                }
                WorldItem::Function(function) => problems.push(format!(
                    "imports the bare function `{}`, which {} does not provide",
                    function.name, self.name
                )),
                WorldItem::Type { .. } => {}
            }
        }
        for (key, item) in &self.resolve.worlds[self.world].exports {
            let WorldItem::Interface { id, .. } = item else {
                continue;
            };
            let called = &self.resolve.interfaces[*id];
            let named = self.resolve.name_world_key(key);
            let exported = component_interface(
                theirs.worlds[component.world].exports.values(),
                theirs,
                &self.resolve,
                called,
            );
            match exported {
                Some(exported) => {
                    for function in called.functions.keys() {
                        if !exported.functions.contains_key(function) {
                            problems.push(format!(
                                "exports `{named}` without `{function}`, which {} calls",
                                self.name
                            ));
                        }
                    }
                }
                None => problems.push(format!(
                    "does not export `{named}` (or a compatible version), which {} calls",
                    self.name
                )),
            }
        }
        problems
    }

    /// `" (it has @…, @…)"` when the host has the interface at other versions.
    fn versions_of(&self, theirs: &Resolve, wanted: &Interface) -> String {
        let (package, name) = identity(theirs, wanted);
        let versions: Vec<String> = self.resolve.worlds[self.world]
            .imports
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => Some(&self.resolve.interfaces[*id]),
                _ => None,
            })
            .filter(|interface| {
                let (other_package, other_name) = identity(&self.resolve, interface);
                (other_package.0, other_package.1, other_name) == (package.0, package.1, name)
            })
            .map(|interface| {
                identity(&self.resolve, interface)
                    .0
                    .2
                    .map_or_else(|| "no version".to_owned(), |v| format!("@{v}"))
            })
            .collect();
        if versions.is_empty() {
            String::new()
        } else {
            format!(" (it has {})", versions.join(", "))
        }
    }
}

/// Among `items` (of `resolve`), the interface that is `wanted` (of `wanted_in`) at a
/// compatible version.
fn component_interface<'a, 'i>(
    mut items: impl Iterator<Item = &'i WorldItem>,
    resolve: &'a Resolve,
    wanted_in: &Resolve,
    wanted: &Interface,
) -> Option<&'a Interface> {
    let ((namespace, package, version), name) = identity(wanted_in, wanted);
    items.find_map(|item| {
        let WorldItem::Interface { id, .. } = item else {
            return None;
        };
        let candidate = &resolve.interfaces[*id];
        let ((other_namespace, other_package, other_version), other_name) =
            identity(resolve, candidate);
        (other_namespace == namespace
            && other_package == package
            && other_name == name
            && compatible(version, other_version))
        .then_some(candidate)
    })
}

/// Whether importing `interface` needs the host: it has functions or resource types.
fn asks_the_host(resolve: &Resolve, interface: &Interface) -> bool {
    !interface.functions.is_empty()
        || interface
            .types
            .values()
            .any(|id| matches!(resolve.types[*id].kind, TypeDefKind::Resource))
}

type PackageIdentity<'a> = (&'a str, &'a str, Option<&'a Version>);

/// `((namespace, package, version), interface name)`; empty names for an unnamed interface.
fn identity<'a>(resolve: &'a Resolve, interface: &'a Interface) -> (PackageIdentity<'a>, &'a str) {
    let name = interface.name.as_deref().unwrap_or_default();
    match interface.package {
        Some(package) => {
            let package = &resolve.packages[package].name;
            (
                (&package.namespace, &package.name, package.version.as_ref()),
                name,
            )
        }
        None => (("", "", None), name),
    }
}

/// Whether a host's `provided` version links a component's `wanted` one (wasmtime's rule).
pub fn compatible(wanted: Option<&Version>, provided: Option<&Version>) -> bool {
    match (wanted, provided) {
        (None, None) => true,
        (Some(wanted), Some(provided)) => {
            if !wanted.pre.is_empty() || !provided.pre.is_empty() {
                wanted == provided
            } else if wanted.major == 0 {
                provided.major == 0 && provided.minor == wanted.minor
            } else {
                provided.major == wanted.major
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_link_as_in_wasmtime() {
        assert!(compatible(Some(&v("0.2.12")), Some(&v("0.2.6"))));
        assert!(compatible(Some(&v("0.2.0")), Some(&v("0.2.6"))));
        assert!(!compatible(Some(&v("0.2.6")), Some(&v("0.3.0"))));
        assert!(compatible(Some(&v("1.4.0")), Some(&v("1.0.0"))));
        assert!(!compatible(Some(&v("1.0.0")), Some(&v("2.0.0"))));
        assert!(compatible(
            Some(&v("0.2.0-draft2")),
            Some(&v("0.2.0-draft2"))
        ));
        assert!(!compatible(
            Some(&v("0.2.0-draft2")),
            Some(&v("0.2.0-draft"))
        ));
        assert!(!compatible(
            Some(&v("0.2.0-draft-2024-09-27")),
            Some(&v("0.2.0-rc.1"))
        ));
        assert!(!compatible(Some(&v("0.2.0")), None));
    }
}
