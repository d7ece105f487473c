import { Module } from '@nestjs/common';
import { DashboardController } from './dashboard.controller';
import { DashboardFiles } from './dashboard-files';

/** The live dashboard: a static page built from `dashboard/` that talks to the server over socket.io. */
@Module({ controllers: [DashboardController], providers: [DashboardFiles] })
export class DashboardModule {}
