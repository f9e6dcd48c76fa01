// The built-in drivers (libnetwork's getInitializers): what `-d NAME` selects. Remote and overlay
// drivers are registered on a controller at run time (NetworkController.registerDriver).
import { bridgeDriver } from './bridge';
import { cniDriver } from './cni';
import type { Driver } from './driver';
import { hostDriver } from './host';
import { nullDriver } from './null';

export const builtinDrivers: readonly Driver[] = [bridgeDriver, nullDriver, hostDriver, cniDriver];
