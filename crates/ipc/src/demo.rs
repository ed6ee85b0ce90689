//! The client proxy [`DemoProxy`] of `org.cardgate.Demo1`, the embedded demo's controls
//! (`crates/ipc/interfaces/org.cardgate.Demo1.xml`), served only by `cardgated-demo`: the
//! `cardgate demo` command and the e2e suites use it to put cards in and take them out.

/// The object path of the demo's controls.
pub const DEMO_OBJECT_PATH: &str = "/org/cardgate/Demo";

/// The introspection XML of `org.cardgate.Demo1` (not installed: the demo is no product).
pub const DEMO1_XML: &str = include_str!("../interfaces/org.cardgate.Demo1.xml");

/// The client side of `org.cardgate.Demo1`; see the XML for what each method does.
#[zbus::proxy(
    interface = "org.cardgate.Demo1",
    default_service = "org.cardgate.Agent",
    default_path = "/org/cardgate/Demo",
    gen_blocking = false
)]
pub trait Demo {
    /// Each demo card: name, holder name, holder UUID, card serial, RA unlock code.
    fn cards(&self) -> zbus::Result<Vec<(String, String, String, String, String)>>;

    /// Puts demo card `card` into `reader` (`""`: the first reader).
    fn insert_card(&self, card: &str, reader: &str) -> zbus::Result<()>;

    /// Takes the card out of `reader` (`""`: the first reader holding one).
    fn remove_card(&self, reader: &str) -> zbus::Result<()>;

    /// Takes out whatever is in the first reader and puts `card` in.
    fn swap_card(&self, card: &str) -> zbus::Result<()>;

    /// What the holder keys on the PIN-pad reader at its next prompt.
    fn enter_on_pin_pad(&self, passcode: &str) -> zbus::Result<()>;

    /// Sessions idle out, and a card left in an idle workstation is reported, after
    /// `seconds` from now on.
    fn shorten_idle(&self, seconds: u32) -> zbus::Result<()>;

    /// The messages spine-sim sent to holders (one-time codes), one JSON object each.
    fn outbox(&self) -> zbus::Result<Vec<String>>;
}
