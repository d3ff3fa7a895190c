// Types for quick-exit.js (plain JavaScript so that test pages can import it unbundled).
export declare const ESC_WINDOW_MS: number;
export declare function quickExit(url: string, onExit?: () => void): void;
export declare function installQuickExit(button: HTMLElement, url: () => string, onExit?: () => void): void;
