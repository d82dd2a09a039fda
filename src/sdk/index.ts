/**
 * `pollen/sdk`: the app programming model (records, Message, Context, ClientApp, ServerApp,
 * Grid, InMemoryGrid for simulations). This is the public surface apps import; it never imports
 * a server module. Encoders, limits and other runtime internals are imported by the runtime from
 * their own modules, not from here. The whole surface is described in docs/sdk.md.
 */

export { isPollenError, PollenError } from '../errors.js';
export {
  ClientApp,
  type ClientAppOptions,
  type ContentMessage,
  type Grid,
  type Handler,
  InMemoryGrid,
  type InMemoryGridOptions,
  type InMemoryNode,
  ReplyErrorCode,
  type SendAndReceiveOptions,
  ServerApp,
  type ServerMain,
} from './app.js';
export { type ArtefactData, type Artefacts, MemoryArtefacts, type SavedArtefact } from './artefacts.js';
export {
  type Context,
  type ContextInit,
  createContext,
  type Resources,
  type UserConfig,
  type UserConfigValue,
} from './context.js';
export { fromFloat16, toFloat16 } from './float16.js';
export {
  type CreateMessageOptions,
  Message,
  type MessageError,
  type MessageType,
  type Metadata,
  SERVER_NODE_ID,
} from './message.js';
export {
  type AnyRecord,
  type ArrayEntry,
  ArrayRecord,
  ConfigRecord,
  type ConfigScalar,
  type ConfigValue,
  type DType,
  MetricRecord,
  type MetricValue,
  RecordDict,
  type TypedArray,
} from './records.js';
export { type RoundReport, reportRound } from './report.js';
