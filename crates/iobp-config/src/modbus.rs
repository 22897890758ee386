//! The `modbus` source's settings (`"type": "modbus"`): how the device is reached (Modbus TCP,
//! or RTU on a serial port with the serial side's settings) and what is polled.
//!
//! A poll reads one block (coils, discrete inputs, holding or input registers) of one unit on
//! its own schedule; each executed poll becomes one message. Optional `fields` decode the block
//! into named values (types, word order, scaling). Validation (`validate.rs`) bounds every list
//! and range here: at most [`MAX_MODBUS_POLLS`] polls, the protocol's block sizes, intervals of
//! at least [`MIN_MODBUS_INTERVAL_MS`].

use serde::{Deserialize, Serialize};

use crate::spec::{FlowControl, Parity, Rs485Spec, SerialSpec, at_path};

/// Most polls one `modbus` source runs.
pub const MAX_MODBUS_POLLS: usize = 256;
/// Most decoded fields of one poll.
pub const MAX_MODBUS_FIELDS: usize = 125;
/// Shortest poll interval.
pub const MIN_MODBUS_INTERVAL_MS: u64 = 10;
/// Longest poll interval: one day.
pub const MAX_MODBUS_INTERVAL_MS: u64 = 86_400_000;
/// Default response timeout of a request.
pub const DEFAULT_MODBUS_TIMEOUT_MS: u64 = 1000;
/// Most registers one read returns (the protocol's limit for functions 3 and 4).
pub const MAX_MODBUS_REGISTERS: u16 = 125;
/// Most bits one read returns (the protocol's limit for functions 1 and 2).
pub const MAX_MODBUS_BITS: u16 = 2000;
/// Longest poll or field name.
pub const MAX_MODBUS_NAME: usize = 64;

/// A Modbus device polled by a source. One message per executed poll (the JSON shape is in the
/// engine's `source/modbus.rs` docs and the manual's field-protocols chapter); an exception or timeout is counted and
/// shown in the status, never stored as a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSpec {
    /// How the device is reached.
    pub transport: ModbusTransport,
    /// What is read, and how often: 1 to [`MAX_MODBUS_POLLS`] polls.
    pub polls: Vec<ModbusPoll>,
}

/// How a Modbus device is reached: `{"type": "tcp", …}` or `{"type": "rtu", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModbusTransport {
    /// Modbus TCP (MBAP header), to a device or a gateway.
    Tcp(ModbusTcpSpec),
    /// Modbus RTU on a serial port (RS-232 or RS-485), one request at a time on the line.
    Rtu(ModbusRtuSpec),
}

impl<'de> Deserialize<'de> for ModbusTransport {
    // By hand, as `EndpointSpec`: serde's tagged enums lose the path of an error inside.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let serde_json::Value::Object(mut obj) = serde_json::Value::deserialize(d)? else {
            return Err(D::Error::custom("expected an object with a `type` (tcp or rtu)"));
        };
        let ty = match obj.remove("type") {
            Some(serde_json::Value::String(t)) => t,
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        let v = serde_json::Value::Object(obj);
        match ty.as_str() {
            "tcp" => at_path(v).map(ModbusTransport::Tcp),
            "rtu" => at_path(v).map(ModbusTransport::Rtu),
            other => Err(D::Error::unknown_variant(other, &["tcp", "rtu"])),
        }
    }
}

impl ModbusTransport {
    /// The response timeout of one request.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            ModbusTransport::Tcp(t) => t.timeout_ms,
            ModbusTransport::Rtu(r) => r.timeout_ms,
        }
        .unwrap_or(DEFAULT_MODBUS_TIMEOUT_MS)
    }
}

/// Modbus TCP: the device's (or gateway's) address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpSpec {
    /// Host name or IP address.
    pub host: String,
    /// Port. Default 502.
    #[serde(default = "default_modbus_port")]
    pub port: u16,
    /// How long a request (and connecting) may take before the device counts as not
    /// answering. 10–60000 ms, default [`DEFAULT_MODBUS_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

fn default_modbus_port() -> u16 {
    502
}

/// Modbus RTU: the serial port and its line settings, as on a `serial` side (no framing or
/// acknowledgements: the protocol has its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusRtuSpec {
    /// `COM3` (Windows) or `/dev/ttyUSB0` (Linux).
    pub port: String,
    /// Line speed. Default 9600.
    #[serde(default = "default_baud")]
    pub baud_rate: u32,
    /// 5–8. Default 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Default `None` (Modbus RTU's own default is even parity; set what the device uses).
    #[serde(default)]
    pub parity: Parity,
    /// 1 or 2. Default 1.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Default `None`.
    #[serde(default)]
    pub flow_control: FlowControl,
    /// RS-485 transceiver control (Linux drivers that support it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rs485: Option<Rs485Spec>,
    /// How long a device may take to answer. 10–60000 ms, default
    /// [`DEFAULT_MODBUS_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

impl ModbusRtuSpec {
    /// The same line settings as a `serial` side, so the port opens (and is checked, locked,
    /// switched to RS-485) exactly as a serial side's does.
    pub fn serial(&self) -> SerialSpec {
        SerialSpec {
            port: self.port.clone(),
            baud_rate: self.baud_rate,
            data_bits: self.data_bits,
            parity: self.parity,
            stop_bits: self.stop_bits,
            flow_control: self.flow_control,
            framing: crate::spec::FramingSpec::default(),
            ack: crate::spec::AckSpec::None,
            rs485: self.rs485,
            write_timeout_ms: None,
        }
    }
}

/// One block read on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusPoll {
    /// Names the poll in messages, the status and errors: 1–64 characters, unique.
    pub name: String,
    /// Unit (slave) id. RTU: 1–247 (0 is broadcast, which nobody answers); TCP: 0–255 (many
    /// devices answer 0 or 255, gateways route by it).
    pub unit: u8,
    /// What is read.
    pub function: ModbusFunction,
    /// First address (0-based, as on the wire: register 40001 is holding register 0).
    pub address: u16,
    /// How many: 1–125 registers, 1–2000 bits; `address + count` at most 65536.
    pub count: u16,
    /// How often, in ms (at least 10). A poll runs at most once at a time; when one is late
    /// (a slow device), missed cycles are skipped, never run in a burst.
    pub interval_ms: u64,
    /// Named values decoded from the block, in the message's `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ModbusField>,
}

/// The read functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModbusFunction {
    /// Function 1, read coils (bits).
    Coils,
    /// Function 2, read discrete inputs (bits).
    DiscreteInputs,
    /// Function 3, read holding registers (16-bit words).
    HoldingRegisters,
    /// Function 4, read input registers (16-bit words).
    InputRegisters,
}

impl ModbusFunction {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModbusFunction::Coils => "coils",
            ModbusFunction::DiscreteInputs => "discrete_inputs",
            ModbusFunction::HoldingRegisters => "holding_registers",
            ModbusFunction::InputRegisters => "input_registers",
        }
    }

    /// Whether it reads bits (coils, discrete inputs) rather than registers.
    pub fn reads_bits(self) -> bool {
        matches!(self, ModbusFunction::Coils | ModbusFunction::DiscreteInputs)
    }
}

/// A named value in a poll's block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusField {
    /// Its key in `values`: 1–64 characters, unique within the poll.
    pub name: String,
    /// Where it starts in the block: a register (or bit) index from the poll's `address`.
    pub offset: u16,
    /// How the registers are read.
    #[serde(rename = "type")]
    pub kind: ModbusValueType,
    /// For 32-bit types: which register holds the high word. Default `big` (the first).
    #[serde(default, skip_serializing_if = "is_big")]
    pub word_order: WordOrder,
    /// Multiplies the raw value (numbers only): `value = raw × scale + offset_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Decimal>,
    /// Added after scaling (numbers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_value: Option<Decimal>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_big(w: &WordOrder) -> bool {
    *w == WordOrder::Big
}

/// How a field's registers become a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModbusValueType {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// One bit (coils, discrete inputs), or a register that is not zero.
    Bool,
}

impl ModbusValueType {
    /// Registers (or bits) the value takes.
    pub fn width(self) -> u16 {
        match self {
            ModbusValueType::U32 | ModbusValueType::I32 | ModbusValueType::F32 => 2,
            ModbusValueType::U16 | ModbusValueType::I16 | ModbusValueType::Bool => 1,
        }
    }
}

/// Word order of 32-bit values (bytes within a register are always big-endian, as the
/// protocol sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// The first register holds the high word (the protocol's own order).
    #[default]
    Big,
    /// The first register holds the low word ("word swapped").
    Little,
}

/// A JSON number kept as `f64`, compared by its bits so that specs stay `Eq`
/// (validation refuses NaN and infinities).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Decimal(pub f64);

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Decimal {}
