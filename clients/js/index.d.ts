// Types of hipush-js (hipush.js): the HiPush class, its options, events and messages.

/** A message as a poll or the SSE stream hands it out (SPEC §5). */
interface HiPushMessageShape {
  /** The delivery id: what is acknowledged, deduplicated and reported by `clicked`. */
  id: number;
  /** The saved message's id (`msg_id` of the publish call). */
  msg_id: number;
  job_id: number | null;
  /** 0: a message for the app, 1: a notification. */
  msg_type: 0 | 1;
  /** What was published: text, or a notification's JSON object (title, body, url, image), which a
   *  notification may also carry as JSON text. */
  content: string | {[field: string]: unknown};
  /** When it was published, unix milliseconds. */
  ts: number;
}

declare class HiPush {
  constructor(options?: HiPush.Options);

  /** The SDK's version. */
  static readonly version: string;

  readonly options: Readonly<HiPush.ResolvedOptions>;
  /** This client's id: given, or handed out by /user/genId once connected. */
  clientId: string | null;
  /** The client token in use (fetched again after a 401). */
  token: string | null;
  /** This device's id (appKey mode; kept in localStorage). */
  deviceId: string | null;
  /** Base URL of the comet node being polled or streamed from. */
  node: string | null;
  /** What receives, once connect() chose: the SSE stream or the long poll ("auto" may fall back to it). */
  readonly transport: "sse" | "poll" | null;
  readonly state: HiPush.State;
  readonly stats: HiPush.Stats;

  on(event: "message", handler: (this: HiPush, message: HiPush.Message) => void): this;
  on(event: "notification",
     handler: (this: HiPush, message: HiPush.Message, notification: HiPush.Notification) => void): this;
  on(event: "connected", handler: (this: HiPush, info: HiPush.ConnectedInfo) => void): this;
  on(event: "disconnected", handler: (this: HiPush, info: HiPush.DisconnectedInfo) => void): this;
  on(event: "error", handler: (this: HiPush, error: HiPush.Error) => void): this;
  on(event: "fallback", handler: (this: HiPush, info: HiPush.FallbackInfo) => void): this;
  /** Removes one handler, or every handler of the event when `handler` is left out. */
  off(event: HiPush.EventName, handler?: (...args: any[]) => void): this;

  /** Starts receiving: registers (appKey mode), fetches a token, finds the node, streams or polls. Throws for
   *  transport "sse" without an EventSource. */
  connect(): this;
  /** Stops receiving; `connect()` starts again. */
  disconnect(): this;
  /** Reports that the user opened a message (/user/click), counted once per message and client. */
  clicked(message: HiPush.Message | number, callback?: (error: HiPush.Error | null) => void): this;
  /** Asks the user to allow notifications (call it from a click handler). */
  requestNotificationPermission(callback?: (permission: "default" | "granted" | "denied" | "unsupported") => void): void;
}

declare namespace HiPush {
  type Message = HiPushMessageShape;
  type State = "disconnected" | "connecting" | "connected" | "reconnecting";
  type EventName = "message" | "notification" | "connected" | "disconnected" | "error" | "fallback";
  type TransportName = "auto" | "sse" | "xhr" | "jsonp" | "fetch";

  /** What an EventSource constructor must offer the SDK (the browser's, or a polyfill's). */
  interface EventSourceLike {
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: {data: string}) => void) | null;
    onerror: ((event: unknown) => void) | null;
    addEventListener(type: "missed", listener: (event: {data: string}) => void): void;
    close(): void;
  }
  type EventSourceConstructor = new (url: string) => EventSourceLike;

  /** A request of a custom transport: start calls done once, asynchronously. */
  interface TransportRequest {
    start(done: (status: number, body: any, retryAfter?: number) => void): void;
    abort(): void;
  }
  /** A custom transport: GET `url` with the query `params`; status 0 for no answer. */
  type Transport = (url: string, params: Record<string, string | number>) => TransportRequest;

  interface Options {
    /** Base URL of a hipush web node (default: this page's origin). */
    server?: string;
    /** The app's key: the SDK registers the device (/user/genId) and fetches tokens itself. */
    appKey?: string;
    /** This device's id (default: generated once and kept in localStorage). */
    deviceId?: string;
    /** Signed-token mode: a client id handed out by the app's backend (no appKey needed). */
    clientId?: string;
    /** Signed-token mode: its token. */
    token?: string;
    /** Signed-token mode: fetches a fresh token (after a 401); call back with (error, token). */
    getToken?: (clientId: string, callback: (error: unknown, token?: string) => void) => void;
    /** "auto": the SSE stream where EventSource exists, else the long poll (XHR with CORS, JSONP where that is
     *  missing, fetch where there is no XHR: Node 18+, workers); a stream that does not open while polls
     *  answer falls back to the poll ("fallback" event). "sse" (the stream only), "xhr", "jsonp", "fetch"
     *  (the long poll), or a custom transport (long poll). */
    transport?: TransportName | Transport;
    /** The EventSource constructor to use (default the global one), e.g. a polyfill. */
    EventSource?: EventSourceConstructor;
    /** Ask /service/hash which comet node to poll (default true); false polls `server`. */
    discover?: boolean;
    /** Seconds a poll may park on the server (default 30, at most 60). */
    pollTimeout?: number;
    /** Reconnect backoff in milliseconds, jittered (default 1000). */
    minDelay?: number;
    /** The longest reconnect backoff in milliseconds (default 30000). */
    maxDelay?: number;
    /** Show notifications with the browser Notification API when permitted (default true). */
    notify?: boolean;
    /** Title of a notification whose content has none (default document.title). */
    notificationTitle?: string;
  }

  interface ResolvedOptions {
    server: string;
    appKey: string | null;
    transport: TransportName | Transport;
    discover: boolean;
    pollTimeout: number;
    minDelay: number;
    maxDelay: number;
    notify: boolean;
    notificationTitle: string | null;
    getToken: Options["getToken"] | null;
    EventSource: EventSourceConstructor | null;
  }

  /** A notification's content, parsed: plain text, or JSON with title/body/url/image. */
  interface Notification {
    title: string;
    body: string;
    url: string | null;
    image: string | null;
    /** The parsed JSON object, or the content as it came. */
    data: unknown;
  }

  interface Stats {
    received: number;
    duplicates: number;
    reconnects: number;
    failures: number;
    /** Messages the server dropped from an overflowing queue. */
    missed: number;
  }

  interface ConnectedInfo {
    clientId: string;
    node: string;
  }

  interface DisconnectedInfo {
    reason: string;
  }

  /** "auto" switched from the SSE stream to the long poll for this connection. */
  interface FallbackInfo {
    from: "sse";
    to: "poll";
    reason: string;
  }

  interface Error {
    /** What failed: "register", "token", "poll" (also the probe after a stream that did not open), "ack" (a
     *  POST /comet/ack over SSE), "request", "click", "notification" or "handler". */
    type: string;
    /** The HTTP status, 0 for no answer (or one the browser hides). */
    status: number;
    /** hipush's error code (SPEC), when the answer had one. */
    code?: number;
    reason: string;
    /** Seconds the server asked to wait (Retry-After of a 503 or 429). */
    retryAfter?: number;
    /** Failures in a row, for connection errors. */
    attempt?: number;
    /** What a throwing handler threw. */
    error?: unknown;
  }
}

export = HiPush;
