/**
 * `pollen/sdk`: the app programming model (records, Message, Context, ClientApp, ServerApp, Grid).
 * This is the public surface apps import; it never imports a server module.
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
export {
  type Context,
  type ContextInit,
  createContext,
  type UserConfig,
  type UserConfigValue,
} from './context.js';
export {
  type CreateMessageOptions,
  DEFAULT_TTL_SECONDS,
  MESSAGE_TYPES,
  Message,
  type MessageError,
  type MessageInit,
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
  type DecodeOptions,
  DTYPE_NAMES,
  type DType,
  type DTypeArrays,
  decodeArrayRecord,
  dtypeOf,
  encodeArrayRecord,
  MAX_NAME_LENGTH,
  MAX_NDIM,
  MetricRecord,
  type MetricValue,
  RecordDict,
  type TypedArray,
  validateName,
} from './records.js';
export { canReport, type ReportingGrid, type RoundReport, reportRound } from './report.js';
