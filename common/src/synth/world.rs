//! The synthetic world's classes: a three-level hierarchy whose concepts are visible parts.
//!
//! ```text
//! whole
//! ├─ animal (eye)
//! │  ├─ mammal (fur, four legs)
//! │  │  ├─ cat (pointed ears, long raised tail; ginger)
//! │  │  └─ dog (floppy ear, snout, red collar; brown)
//! │  └─ bird (feathered wing, beak, thin legs)
//! │     ├─ duck (flat bill, short tail; yellow)
//! │     └─ parrot (hooked beak, long tail feathers; red, blue wing)
//! └─ vehicle (windows, dark outline)
//!    ├─ wheeled_vehicle (wheels)
//!    │  ├─ bus (door, stripe; tall, green)
//!    │  └─ car (cabin, headlight; low, blue)
//!    └─ watercraft (hull, waves)
//!       ├─ sailboat (mast, sails; red-brown hull)
//!       └─ steamship (superstructure, funnel; navy hull)
//! ```
//!
//! Every concept owns parts that all classes under it draw, so a concept above the leaves
//! is learnable from shared pixels, as in the HINT paper (mammals share fur, vehicles
//! windows). Leaves differ by their own parts and by their colours — but 15% of each
//! class's images take a colour shared with the sibling class, so telling siblings apart
//! needs their own parts, not colour alone.

/// The root concept's name.
pub const ROOT: &str = "whole";

/// A concept above the leaves and the parts every class under it has.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    /// The concept's name in `hierarchy.yaml`.
    pub name: &'static str,
    /// Its parent (the root for level-1 concepts).
    pub parent: &'static str,
    /// Parts drawn by every class under it.
    pub parts: &'static [&'static str],
}

/// A leaf class (a dataset label).
#[derive(Clone, Copy, Debug)]
pub struct Leaf {
    /// The label (folder name).
    pub name: &'static str,
    /// Its parent group (a level-2 concept).
    pub parent: &'static str,
    /// The parts only this class has.
    pub parts: &'static [&'static str],
    /// Its main colour, in words.
    pub colour: &'static str,
}

/// The groups, parents before children.
pub const GROUPS: [Group; 6] = [
    Group {
        name: "animal",
        parent: ROOT,
        parts: &["eye"],
    },
    Group {
        name: "vehicle",
        parent: ROOT,
        parts: &["windows", "dark_outline"],
    },
    Group {
        name: "mammal",
        parent: "animal",
        parts: &["fur", "four_legs"],
    },
    Group {
        name: "bird",
        parent: "animal",
        parts: &["feathered_wing", "beak", "thin_legs"],
    },
    Group {
        name: "wheeled_vehicle",
        parent: "vehicle",
        parts: &["wheels"],
    },
    Group {
        name: "watercraft",
        parent: "vehicle",
        parts: &["hull", "waves"],
    },
];

/// The leaves, sorted by name: position = label index (torchvision's ImageFolder rule).
pub const LEAVES: [Leaf; 8] = [
    Leaf {
        name: "bus",
        parent: "wheeled_vehicle",
        parts: &["door", "stripe"],
        colour: "green (15%: red, shared with car)",
    },
    Leaf {
        name: "car",
        parent: "wheeled_vehicle",
        parts: &["cabin", "headlight"],
        colour: "blue (15%: red, shared with bus)",
    },
    Leaf {
        name: "cat",
        parent: "mammal",
        parts: &["pointed_ears", "long_tail"],
        colour: "ginger (15%: grey, shared with dog)",
    },
    Leaf {
        name: "dog",
        parent: "mammal",
        parts: &["floppy_ear", "snout", "collar"],
        colour: "brown (15%: grey, shared with cat)",
    },
    Leaf {
        name: "duck",
        parent: "bird",
        parts: &["flat_bill", "short_tail"],
        colour: "yellow (15%: white, shared with parrot)",
    },
    Leaf {
        name: "parrot",
        parent: "bird",
        parts: &["hooked_beak", "long_tail_feathers"],
        colour: "red with a blue wing (15%: white body, shared with duck)",
    },
    Leaf {
        name: "sailboat",
        parent: "watercraft",
        parts: &["mast", "sails"],
        colour: "white sails on a red-brown hull (15%: green hull, shared with steamship)",
    },
    Leaf {
        name: "steamship",
        parent: "watercraft",
        parts: &["superstructure", "funnel"],
        colour: "navy hull (15%: green, shared with sailboat), white superstructure, red funnel",
    },
];

/// The leaves' names by label index.
pub fn labels() -> Vec<String> {
    LEAVES.iter().map(|l| l.name.to_string()).collect()
}

fn group(name: &str) -> Option<&'static Group> {
    GROUPS.iter().find(|g| g.name == name)
}

/// The concepts above `leaf`, root first: `["whole", "animal", "mammal"]`.
pub fn ancestors(leaf: &Leaf) -> Vec<&'static str> {
    let mut chain = Vec::new();
    let mut at = leaf.parent;
    while let Some(g) = group(at) {
        chain.push(g.name);
        at = g.parent;
    }
    chain.push(ROOT);
    chain.reverse();
    chain
}

/// Every part `leaf` draws: inherited ones first (root side), then its own.
pub fn parts(leaf: &Leaf) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = ancestors(leaf)
        .into_iter()
        .filter_map(group)
        .flat_map(|g| g.parts.iter().copied())
        .collect();
    all.extend(leaf.parts.iter().copied());
    all
}

/// The children of concept `name`, in hierarchy order (groups, then leaves by name).
pub fn children(name: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = GROUPS
        .iter()
        .filter(|g| g.parent == name)
        .map(|g| g.name)
        .collect();
    out.extend(LEAVES.iter().filter(|l| l.parent == name).map(|l| l.name));
    out
}

/// `hierarchy.yaml` in the custom-hierarchy format: `children: {parent: [children]}`.
pub fn hierarchy_yaml(seed: u64) -> String {
    let mut yaml = format!(
        "# The synthetic world's class hierarchy (`hint synth`, seed {seed}).\n\
         # parent: [children]; names that are not parents are the dataset's labels.\n\
         name: synthetic-world\nchildren:\n"
    );
    let mut parents = vec![ROOT];
    parents.extend(GROUPS.iter().map(|g| g.name));
    for parent in parents {
        yaml.push_str(&format!("  {parent}: [{}]\n", children(parent).join(", ")));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_sorted_and_every_group_has_two_children() {
        let names = labels();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(children(ROOT), ["animal", "vehicle"]);
        for g in GROUPS {
            assert_eq!(children(g.name).len(), 2, "{}", g.name);
        }
    }

    #[test]
    fn siblings_share_their_parents_parts() {
        let cat = parts(&LEAVES[2]);
        let dog = parts(&LEAVES[3]);
        assert_eq!(ancestors(&LEAVES[2]), ["whole", "animal", "mammal"]);
        for shared in ["eye", "fur", "four_legs"] {
            assert!(cat.contains(&shared) && dog.contains(&shared), "{shared}");
        }
        assert!(cat.contains(&"pointed_ears") && !dog.contains(&"pointed_ears"));
        let car = parts(&LEAVES[1]);
        assert!(car.contains(&"wheels") && car.contains(&"windows") && !car.contains(&"eye"));
    }
}
