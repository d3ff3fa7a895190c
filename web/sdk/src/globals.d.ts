// Timers and microtasks exist in every runtime the SDK supports (browsers, Node, React
// Native) but not in the ES2022 library the core is checked against, which keeps DOM-
// and Node-only APIs out of the core. Only these are declared.
declare function setTimeout(handler: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare function queueMicrotask(callback: () => void): void;
// UTF-8 text to and from bodies (React Native's Hermes has both since 0.74).
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
