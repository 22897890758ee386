// Status pills (colour and a text label, never colour alone) and the names of side types.

import { h } from './dom.js';

export const LABELS = {
  connection: { green: 'Connected', yellow: 'Connecting', red: 'Disconnected', white: 'Stopped' },
  buffer: { white: 'Empty', green: 'Flowing', yellow: 'Backlog', red: 'Full' },
  channel: { green: 'Running', yellow: 'Degraded', red: 'Error', white: 'Stopped' },
};

export const label = (kind, color) => (LABELS[kind] && LABELS[kind][color]) || color || 'Unknown';

/** A status pill: colour and a text label (never colour alone). */
export const badge = (kind, color, title) => h('span', {
  class: `badge badge-${['green', 'yellow', 'red', 'white'].includes(color) ? color : 'white'}`,
  title: title || undefined,
  dataset: { kind, color: color || '' },
  text: label(kind, color),
});

export const TYPE_NAMES = {
  tcp_server: 'TCP server',
  tcp_client: 'TCP client',
  udp: 'UDP',
  serial: 'Serial',
  remote_icombuffer: 'Remote ioBufferPro',
  mqtt: 'MQTT broker',
  nats: 'NATS JetStream',
};

export const typeName = (t) => TYPE_NAMES[t] || t;
