// The TypeORM CLI's entry (`npm run migration:run` / `migration:revert`); the app itself migrates at boot.
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { configFromProcessEnv } from 'src/config/app-config';
import { dataSourceOptions } from './database.service';

export default new DataSource(dataSourceOptions(configFromProcessEnv()));
